"""Logs captured as a process writes them: JSON lines through ``stocksync.logs``' own handler
and renderer, parsed back for assertions."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

from stocksync import logs


class CapturedLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every line, parsed: each must be one JSON object."""
        parsed = []
        for line in self.text.splitlines():
            value = json.loads(line)
            assert isinstance(value, dict), line
            parsed.append(value)
        return parsed

    def events(self, event: str, **match: Any) -> list[dict[str, Any]]:
        """The lines of ``event`` whose fields include ``match``."""
        return [
            line
            for line in self.lines()
            if line["event"] == event and all(line.get(k) == v for k, v in match.items())
        ]


@contextlib.contextmanager
def capture_logs(level: str = "DEBUG") -> Iterator[CapturedLogs]:
    captured = CapturedLogs()
    with logs.temporarily("json", level, captured.stream):
        yield captured
