"""Throughput of the Shopify sandbox itself: simple Admin GraphQL requests per second.

The sandbox runs as its own process (`python -m stocksync.sandbox --no-throttling`), and a
lean HTTP/1.1 keep-alive client (raw asyncio streams, so that the client costs little of
the machine) sends requests from several connections for a fixed time. The aim is that the
sandbox is never the bottleneck of stocksync's benchmarks (at least 500 requests/s).

    .venv/bin/python bench/sandbox_throughput.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stocksync.sandbox.manifest import shop_entry
from stocksync.sandbox.server import start_subprocess

READ = """query($item: ID!, $loc: ID!) {
  inventoryItem(id: $item) {
    id sku tracked
    inventoryLevel(locationId: $loc) {
      quantities(names: ["available", "on_hand"]) { name quantity }
    }
  }
}"""
WRITE = """mutation($input: InventorySetQuantitiesInput!) {
  inventorySetQuantities(input: $input) {
    inventoryAdjustmentGroup { id }
    userErrors { code message }
  }
}"""
ITEMS = """query { inventoryItems(first: 50) { nodes { id } } }"""


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, host: str, port: int, path: str, token: str) -> None:
        self.host, self.port, self.path, self.token = host, port, path, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def post(self, payload: dict[str, Any]) -> tuple[int, bytes]:
        assert self.reader is not None
        assert self.writer is not None
        body = json.dumps(payload).encode()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nX-Shopify-Access-Token: {self.token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run_mix(
    graphql_url: str,
    token: str,
    items: list[str],
    location: str,
    seconds: float,
    connections: int,
    write_ratio: float,
) -> Result:
    parts = urlsplit(graphql_url)
    assert parts.hostname is not None
    assert parts.port is not None
    result = Result()
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        conn = Connection(parts.hostname or "", parts.port or 0, parts.path, token)
        await conn.open()
        n = index
        try:
            while time.perf_counter() < deadline:
                item = items[n % len(items)]
                write = write_ratio and (n % int(1 / write_ratio) == 0)
                payload: dict[str, Any] = (
                    {
                        "query": WRITE,
                        "variables": {
                            "input": {
                                "reason": "correction",
                                "name": "available",
                                "ignoreCompareQuantity": True,
                                "quantities": [
                                    {
                                        "inventoryItemId": item,
                                        "locationId": location,
                                        "quantity": n % 100,
                                    }
                                ],
                            }
                        },
                    }
                    if write
                    else {"query": READ, "variables": {"item": item, "loc": location}}
                )
                started = time.perf_counter()
                status, body = await conn.post(payload)
                result.latencies.append(time.perf_counter() - started)
                result.requests += 1
                if status != 200 or b'"errors"' in body:
                    result.errors += 1
                n += connections
        finally:
            await conn.close()

    await asyncio.gather(*(worker(i) for i in range(connections)))
    return result


async def prepare(graphql_url: str, token: str) -> list[str]:
    parts = urlsplit(graphql_url)
    conn = Connection(parts.hostname or "", parts.port or 0, parts.path, token)
    await conn.open()
    try:
        status, body = await conn.post({"query": ITEMS})
        assert status == 200, body
        return [n["id"] for n in json.loads(body)["data"]["inventoryItems"]["nodes"]]
    finally:
        await conn.close()


def report(name: str, result: Result, seconds: float) -> float:
    rate = result.requests / seconds
    lat = sorted(result.latencies)
    p50 = statistics.median(lat) * 1000 if lat else 0.0
    p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else 0.0
    print(
        f"{name:<22} {rate:8.0f} req/s  ({result.requests} requests, {result.errors} errors, "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms)"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process = start_subprocess(
            Path(tmp) / "manifest.json",
            "--no-throttling",
            "--log-level",
            "warning",
            "--shop",
            "bench:shpat_bench",
            "--products",
            "50",
            "--variants",
            "3",
        )
        try:
            shop = shop_entry(process.manifest, "bench")
            url, token, location = (
                shop["graphql_url"],
                shop["access_token"],
                shop["location_ids"][0],
            )
            items = asyncio.run(prepare(url, token))
            asyncio.run(run_mix(url, token, items, location, 1.0, args.connections, 0.0))  # warm up
            print(
                f"sandbox throughput, {args.connections} keep-alive connections, "
                f"{args.seconds:.0f} s per mix, throttling off"
            )
            reads = asyncio.run(
                run_mix(url, token, items, location, args.seconds, args.connections, 0.0)
            )
            report("reads", reads, args.seconds)
            mixed = asyncio.run(
                run_mix(url, token, items, location, args.seconds, args.connections, 0.2)
            )
            report("80% reads, 20% writes", mixed, args.seconds)
        finally:
            process.stop()


if __name__ == "__main__":
    main()
