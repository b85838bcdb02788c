"""Every worker has its own name: leases and heartbeats belong to a worker by name, so two
processes sharing one would renew each other's claims and hide a dead worker."""

from __future__ import annotations

import os
import socket

from stocksync.jobs.queue import worker_name


def test_names_differ_between_workers_and_say_what_and_where() -> None:
    names = {worker_name() for _ in range(1000)}
    assert len(names) == 1000
    name = worker_name("web")
    assert name.startswith(f"web@{socket.gethostname()[:80]}:{os.getpid()}:")
    assert worker_name().startswith("worker@")
