"""Starting stocksync as a new user does: real processes on a fresh data directory, and each
expected startup failure told in one plain line with a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from stocksync.storage.migrate import head_revision, upgrade

DEADLINE_SECONDS = 60.0


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any STOCKSYNC_* setting: the defaults a new user
    gets, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKSYNC_")}
    return {**env, **(extra or {})}


def _stocksync(
    args: list[str], cwd: Path, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stocksync", *args],
        env=_env(extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        check=False,
    )


def _assert_refused(result: subprocess.CompletedProcess[str], *named: str) -> str:
    """One plain line on stderr naming ``named``, a non-zero exit, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for word in named:
        assert word in line, line
    return line


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    """The process's next line of output, waited for until ``deadline``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no output from the process in time"
            if selector.select(timeout=left):
                line = proc.stdout.readline()
                assert line, f"the process ended (exit {proc.wait()}): {proc.stderr.read()}"  # type: ignore[union-attr]
                return line


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``stocksync serve`` in a directory holding nothing, on a port the system chooses."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "stocksync", "serve", "--port", "0"],
        env=_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = _read_line(proc, time.monotonic() + DEADLINE_SECONDS)
        found = re.search(r"serving on (http://\S+)", line)
        assert found, line
        yield proc, found.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_serve_on_a_fresh_data_directory_migrates_and_answers_healthz(
    tmp_path: Path, serving: tuple[subprocess.Popen[str], str]
) -> None:
    proc, url = serving
    # The port listens from the start: the request waits for the app rather than polling it.
    answer = httpx.get(f"{url}/healthz", timeout=DEADLINE_SECONDS)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}
    with sqlite3.connect(tmp_path / ".stocksync" / "stocksync.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]

    # A second server on the same port is refused plainly, before it touches anything.
    port = url.rsplit(":", 1)[1]
    taken = _stocksync(["serve", "--port", port], tmp_path)
    _assert_refused(taken, f"port {port}", "already in use", "--port")
    assert taken.returncode == 1

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=DEADLINE_SECONDS)
    # uvicorn stops gracefully, then ends by the signal it caught, as a process should.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound here, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "case", "named"),
    [
        ("serve", "malformed key", ("STOCKSYNC_SECRET_KEY", "Fernet key")),
        ("worker", "unparseable URL", ("STOCKSYNC_DATABASE_URL", "not a usable database URL")),
        ("serve", "database down", ("cannot use the database", "STOCKSYNC_DATABASE_URL")),
        ("worker", "unwritable data directory", ("STOCKSYNC_DATA_DIR", "cannot write")),
        ("serve", "invalid setting", ("STOCKSYNC_JOB_HEARTBEAT_SECONDS",)),
        ("worker", "unknown log format", ("STOCKSYNC_LOG_FORMAT", "'json' or 'console'")),
    ],
)
def test_an_expected_startup_failure_is_one_plain_line(
    tmp_path: Path, refused_port: int, command: str, case: str, named: tuple[str, ...]
) -> None:
    (tmp_path / "a-file").write_text("")
    extra = {
        "malformed key": {"STOCKSYNC_SECRET_KEY": "not-a-fernet-key"},
        "unparseable URL": {"STOCKSYNC_DATABASE_URL": "postgresql://u@localhost:notaport/db"},
        "database down": {
            "STOCKSYNC_DATABASE_URL": f"postgresql://u:hunter2@127.0.0.1:{refused_port}/db"
        },
        # A file where the directory should be: refused whoever runs the tests (root writes
        # to any directory whatever its mode).
        "unwritable data directory": {"STOCKSYNC_DATA_DIR": str(tmp_path / "a-file" / "data")},
        "invalid setting": {"STOCKSYNC_JOB_HEARTBEAT_SECONDS": "90"},
        "unknown log format": {"STOCKSYNC_LOG_FORMAT": "xml"},
    }[case]
    line = _assert_refused(_stocksync([command], tmp_path, extra))
    for word in named:
        assert word in line, line
    assert "hunter2" not in line


def test_postgresql_without_the_schema_is_refused_naming_migrate(
    pg_url: str, tmp_path: Path
) -> None:
    for command in ("serve", "worker"):
        refused = _stocksync([command], tmp_path, {"STOCKSYNC_DATABASE_URL": pg_url})
        _assert_refused(refused, "`stocksync migrate`", "no stocksync schema")


def _store_with_a_secret(database: Path, key: bytes) -> None:
    upgrade(f"sqlite:///{database}")
    with sqlite3.connect(database) as db:
        db.execute(
            "INSERT INTO stores (platform, external_id, name, is_source, is_destination, status,"
            " credentials, hidden_tags, settings, created_at)"
            " VALUES ('shopify', 'a.myshopify.com', 'a', 1, 0, 'active', ?, '[]', '{}', ?)",
            (Fernet(key).encrypt(b"shpat_token"), datetime.now(UTC).isoformat()),
        )


def test_a_key_that_cannot_open_the_stored_credentials_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _store_with_a_secret(data / "stocksync.db", Fernet.generate_key())
    env = {"STOCKSYNC_DATA_DIR": str(data)}
    # No key anywhere: one would be generated, and could open nothing the database holds.
    missing = _stocksync(["worker"], tmp_path, env)
    _assert_refused(missing, "STOCKSYNC_SECRET_KEY is not set", "secret.key")
    assert not (data / "secret.key").exists()
    other = Fernet.generate_key().decode()
    wrong = _stocksync(["worker"], tmp_path, {**env, "STOCKSYNC_SECRET_KEY": other})
    _assert_refused(wrong, "can be decrypted", "STOCKSYNC_SECRET_KEY")
