"""``stocksync demo`` on the Shopify sandbox, run as an operator runs it: a real process that
starts the sandbox, the web process and the worker, plays a day of merchant activity over
loopback HTTP and must end with every destination agreeing with the source."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

TIMEOUT = 150  # --once gives up after 60 s of settling; this bounds a hung run


def _env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKSYNC_")}
    # The demo's temporary data directory (logs, SQLite) lands under the test's own.
    env["TMPDIR"] = str(tmp_path)
    # Wide enough that no summary line is wrapped.
    env["COLUMNS"] = "200"
    if database_url is not None:
        env["STOCKSYNC_DATABASE_URL"] = database_url
    return env


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "stocksync", "demo", *args]


def _listening(url: str) -> bool:
    parsed = urlparse(url)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) == 0


def _check_summary(out: str) -> tuple[str, str]:
    """The summary's facts; returns the sandbox's and stocksync's URLs."""
    assert "all destinations agree with the source" in out, out
    for name in ("retailer-north", "retailer-south", "outlet"):
        assert f"connected {name} with the source's key" in out, out
    delivered = re.search(r"(\d+) webhooks delivered \((\d+) duplicated, (\d+) reordered\)", out)
    assert delivered is not None, out
    assert int(delivered.group(1)) > 50
    assert int(delivered.group(2)) + int(delivered.group(3)) > 0
    faults = re.search(r"(\d+) API faults injected", out)
    assert faults is not None, out
    assert int(faults.group(1)) > 0
    for kind in ("sale", "pending sale", "payment", "refund with restock", "cancellation"):
        assert re.search(rf"\d+ {kind}\b", out), out
    urls = re.search(r"sandbox at (http://\S+), stocksync at (http://\S+)", out)
    assert urls is not None, out
    assert f"API reference at {urls.group(2)}/docs" in out
    return urls.group(1), urls.group(2)


def _run_once(tmp_path: Path, database_url: str | None) -> None:
    done = subprocess.run(
        _command("--once"),
        env=_env(tmp_path, database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    sandbox_url, web_url = _check_summary(out)
    # Every child process was stopped on the way out.
    assert not _listening(sandbox_url)
    assert not _listening(web_url)


def test_demo_once_converges_on_sqlite(tmp_path: Path) -> None:
    _run_once(tmp_path, None)


@pytest.mark.postgres
def test_demo_once_converges_on_postgres(tmp_path: Path, pg_url: str) -> None:
    _run_once(tmp_path, pg_url)


def test_demo_stops_its_processes_on_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        _command(),
        env=_env(tmp_path, None),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "press Ctrl-C to stop" in line:
                break
        out = "".join(lines)
        assert "press Ctrl-C to stop" in out, out
        sandbox_url, web_url = _check_summary(out)
        assert _listening(sandbox_url)
        assert _listening(web_url)
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, out + rest
    assert not _listening(sandbox_url)
    assert not _listening(web_url)
