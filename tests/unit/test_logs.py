"""The log setup: one handler, JSON lines or a console rendering, stdlib records in the same
format, the job's context on every line, levels that cost nothing when off, and redaction."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import structlog

from stocksync import logs
from tests.log_capture import capture_logs

log = logs.get_logger("stocksync.test")


def test_json_lines_parse_with_the_expected_keys() -> None:
    with capture_logs("INFO") as captured:
        log.info("job_run", kind="flush_destination", connection_id=3, duration_ms=1.5)
        logging.getLogger("procrastinate.worker").warning(
            "job %s stalled", 12, extra={"job_id": 12, "color_message": "\x1b[1mjob"}
        )
    first, second = captured.lines()
    assert list(first)[:4] == ["timestamp", "level", "event", "logger"]
    assert first["timestamp"].endswith("Z")
    assert {k: first[k] for k in ("level", "event", "logger")} == {
        "level": "info",
        "event": "job_run",
        "logger": "stocksync.test",
    }
    assert (first["kind"], first["connection_id"], first["duration_ms"]) == (
        "flush_destination",
        3,
        1.5,
    )
    # A plain logging record, from a library, in the same format with its extra fields.
    assert second["event"] == "job 12 stalled"
    assert (second["level"], second["logger"], second["job_id"]) == (
        "warning",
        "procrastinate.worker",
        12,
    )
    assert "color_message" not in second


def test_the_context_bound_by_a_job_is_on_every_line_it_causes() -> None:
    with capture_logs("INFO") as captured:
        with structlog.contextvars.bound_contextvars(job_id=7, kind="refresh_source"):
            log.info("platform_call", operation="inventoryLevels")
            logging.getLogger("stocksync.jobs.embedded").warning("lease lost")
        log.info("after")
    inside, library, after = captured.lines()
    assert (inside["job_id"], inside["kind"]) == (7, "refresh_source")
    assert (library["job_id"], library["kind"]) == (7, "refresh_source")
    assert "job_id" not in after


def test_console_rendering_is_for_people() -> None:
    stream = io.StringIO()
    with logs.temporarily("console", "INFO", stream):
        log.info("webhook", topic="orders/create", status=200)
    line = stream.getvalue().strip()
    for part in ("webhook", "topic=orders/create", "status=200"):
        assert part in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_the_format_follows_the_stream_unless_asked() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, asked, expected_json in (
        (io.StringIO(), None, True),
        (Terminal(), None, False),
        (Terminal(), "json", True),
        (io.StringIO(), "console", False),
    ):
        with logs.temporarily(asked, "INFO", stream):
            log.info("started")
        text = stream.getvalue()
        assert text.startswith("{") is expected_json, (asked, text)


class Loud:
    """A value that counts how often it is turned into text."""

    def __init__(self) -> None:
        self.rendered = 0

    def __repr__(self) -> str:
        self.rendered += 1
        return "loud"

    __str__ = __repr__


def test_a_level_that_is_off_formats_nothing() -> None:
    loud = Loud()
    with capture_logs("WARNING") as captured:
        log.info("platform_call", value=loud)
        log.debug("detail", value=loud)
        logging.getLogger("stocksync.jobs").info("job %s", loud)
    assert captured.text == ""
    assert loud.rendered == 0
    with capture_logs("INFO") as captured:
        log.info("platform_call", value=loud)
    assert loud.rendered >= 1
    assert captured.lines()[0]["value"] == "loud"


def test_library_chatter_is_shown_only_at_debug() -> None:
    for level, shown in (("INFO", False), ("DEBUG", True)):
        with capture_logs(level) as captured:
            logging.getLogger("httpx").info("HTTP Request: POST https://a.myshopify.com")
            logging.getLogger("procrastinate.worker").info("Starting job")
        assert bool(captured.text) is shown, level


TOKEN = "shpat_0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"access_token": TOKEN}, {"access_token": logs.REDACTED}),
        ({"token": "x"}, {"token": logs.REDACTED}),
        ({"client_secret": "s"}, {"client_secret": logs.REDACTED}),
        ({"password": "p"}, {"password": logs.REDACTED}),
        ({"Authorization": "Bearer b"}, {"Authorization": logs.REDACTED}),
        (
            {"api_key": "k", "secret_key": "f"},
            {"api_key": logs.REDACTED, "secret_key": "[redacted]"},
        ),
        ({"apiKey": "k", "key": "k"}, {"apiKey": logs.REDACTED, "key": logs.REDACTED}),
        ({"hmac": "h", "cookie": "c"}, {"hmac": logs.REDACTED, "cookie": logs.REDACTED}),
        (
            {"headers": {"X-Shopify-Access-Token": TOKEN, "Accept": "application/json"}},
            {"headers": {"X-Shopify-Access-Token": logs.REDACTED, "Accept": "application/json"}},
        ),
        ({"reason": f"refused {TOKEN} twice"}, {"reason": "refused [redacted] twice"}),
        (
            {"details": [{"token": "t"}, TOKEN]},
            {"details": [{"token": logs.REDACTED}, "[redacted]"]},
        ),
        (
            {"url": "https://x/callback?code=c0de&shop=a.myshopify.com&hmac=f00"},
            {"url": "https://x/callback?code=[redacted]&shop=a.myshopify.com&hmac=[redacted]"},
        ),
        # Ids and words that only look alike are kept.
        (
            {"keys": 3, "monkey": "m", "inbox_id": 4, "queueing_lock": "flush:1"},
            {"keys": 3, "monkey": "m", "inbox_id": 4, "queueing_lock": "flush:1"},
        ),
    ],
)
def test_redaction_masks_secret_fields_and_shopify_tokens(
    fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    with capture_logs("INFO") as captured:
        log.info("call", **fields)
        logging.getLogger("tests.library").warning("got %s", TOKEN, extra=fields)
    structured, plain = captured.lines()
    assert {k: structured[k] for k in expected} == expected
    assert {k: plain[k] for k in expected} == expected
    assert plain["event"] == "got [redacted]"
    assert TOKEN not in captured.text


def test_configuring_again_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    with logs.temporarily("json", "INFO", first):
        logs.configure("json", "INFO", stream=second)
        log.info("once")
        assert sum(1 for h in root.handlers if h.formatter is not None) >= 1
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["event"] == "once"
    assert not logs.is_configured()


@pytest.mark.parametrize(
    ("level", "expected"),
    [("info", logging.INFO), ("DEBUG", logging.DEBUG), (None, logging.INFO), (30, 30)],
)
def test_levels_by_name(level: str | int | None, expected: int) -> None:
    assert logs.parse_level(level) == expected


def test_unknown_level_and_format_are_refused() -> None:
    with pytest.raises(ValueError, match="not one of DEBUG, INFO, WARNING, ERROR"):
        logs.parse_level("loud")
    with pytest.raises(ValueError, match="not one of json, console"):
        logs.configure("xml", "INFO", stream=io.StringIO())
    assert not logs.is_configured()
