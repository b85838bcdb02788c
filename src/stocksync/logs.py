"""Structured logs: one setup per process, one format per process, never a secret.

Code that logs asks for a logger here (``get_logger(__name__)``) and gives an event name and
fields, never a formatted sentence: ``log.info("job_done", kind=..., duration_ms=...)``. The
event goes to the standard library's ``logging`` (as do procrastinate's, uvicorn's and
alembic's records), so that a level that is off costs a dictionary and a level check, and so
that everything a process logs meets one handler and one renderer.

``configure`` installs that handler on the root logger, once per process (``stocksync serve``
and ``worker`` do it once their startup checks passed; the one-shot commands at WARNING; the
demo into a file of its own): JSON lines, or a readable console rendering when the stream is a
terminal or ``STOCKSYNC_LOG_FORMAT=console`` asks for it. A process that never calls it (a test,
a benchmark, a library use) keeps the standard library's defaults: warnings and errors only.

The redaction processor masks, as a defence in depth, any field whose name says it holds a
secret (token, secret, password, authorization, cookie, credential, key) and any Shopify
access token found in a text. The events themselves carry ids and topics, never a token, a
secret or a webhook's body.

This module imports nothing of stocksync: any layer may log through it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import IO, Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LogFormat = Literal["json", "console"]
FORMATS: tuple[LogFormat, ...] = ("json", "console")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

REDACTED = "[redacted]"

# Field names that say their value is secret. ``key`` is matched as a whole word (``key``,
# ``api_key``, ``secret_key``, ``apiKey``), not inside ``keys`` or ``monkey``.
_SECRET_NAME = re.compile(
    r"token|secret|passw|authori[sz]ation|cookie|credential|signature|hmac"
    r"|(?:^|[_\-.])key$|(?-i:[a-z]Key$)|apikey",
    re.IGNORECASE,
)
# Shopify's access tokens, app secrets and session tokens: shpat_, shpca_, shppa_, shpss_, shpua_.
_SHOPIFY_TOKEN = re.compile(r"shp(?:at|ca|pa|ss|ua)_[0-9A-Za-z]{8,}")
# Secrets carried in a URL's query (an OAuth callback's code and signature, say).
_SECRET_PARAM = re.compile(
    r"([?&](?:code|state|hmac|signature|token|access_token|secret|client_secret|key)=)[^&\s\"'#]+",
    re.IGNORECASE,
)
# Fields that the formatter and the renderers use: never secret, never rewritten.
_META = frozenset({"event", "level", "logger", "timestamp", "exception", "_record"})
# Attributes that uvicorn and others add to their records for their own formatters.
_DROPPED_EXTRAS = ("color_message",)
# Libraries whose INFO records repeat ours (one line per HTTP request, per job): shown only
# when DEBUG is asked for.
_CHATTY = ("httpx", "procrastinate", "uvicorn.access")
# Libraries whose DEBUG records carry SQL parameters (a webhook's body among them) or HTTP
# headers (cookies): never below WARNING.
_QUIET = ("aiosqlite", "sqlalchemy.engine", "httpcore")

_HANDLER_MARK = "_stocksync_handler"


@functools.lru_cache(maxsize=1024)
def _is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        if "shp" in value:
            value = _SHOPIFY_TOKEN.sub(REDACTED, value)
        if "=" in value:
            value = _SECRET_PARAM.sub(r"\1" + REDACTED, value)
        return value
    if depth > 4:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and _is_secret_name(k) else _clean(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return value


def redact(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask fields named like secrets and Shopify tokens in any text (nested values too)."""
    for name, value in list(event_dict.items()):
        if name in _META:
            if name == "event" and isinstance(value, str):
                event_dict[name] = _clean(value)
            continue
        if _is_secret_name(name):
            event_dict[name] = REDACTED
        else:
            event_dict[name] = _clean(value)
    return event_dict


def _drop_extras(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    for name in _DROPPED_EXTRAS:
        event_dict.pop(name, None)
    return event_dict


# What every emitting logger does with an event whose level is on: let the handler's formatter
# render it.
_EMIT: list[Processor] = [structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
_METHOD_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class Logger(structlog.stdlib.BoundLogger):
    """structlog's logger over ``logging``, asking ``logging`` (which caches the answer) whether
    the level is on before anything is built: an event below the level costs one call."""

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
    ) -> Any:
        if not self._logger.isEnabledFor(_METHOD_LEVELS.get(method_name, logging.NOTSET)):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


def get_logger(name: str) -> Logger:
    """A structured logger writing through ``logging.getLogger(name)``, configured or not."""
    return Logger(logging.getLogger(name), processors=_EMIT, context={})


_FIRST = ("timestamp", "level", "event", "logger")


def _first_keys(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    ordered = {k: event_dict.pop(k) for k in _FIRST if k in event_dict}
    ordered.update(event_dict)
    return ordered


def _renderer(fmt: LogFormat, colors: bool) -> list[Processor]:
    if fmt == "json":
        return [
            structlog.processors.format_exc_info,
            _first_keys,
            structlog.processors.JSONRenderer(),
        ]
    return [structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False)]


def formatter(fmt: LogFormat, *, colors: bool = False) -> structlog.stdlib.ProcessorFormatter:
    """The formatter rendering structlog events and plain ``logging`` records alike."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_extras, *shared],
        processors=[
            # Records of structlog loggers went through the short emit chain only.
            _shared_for_structlog(shared),
            redact,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *_renderer(fmt, colors),
        ],
    )


def _shared_for_structlog(shared: list[Processor]) -> Processor:
    def run(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        if event_dict.get("_from_structlog"):
            for processor in shared:
                event_dict = processor(logger, method, event_dict)  # type: ignore[assignment]
        return event_dict

    return run


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (a test may swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            stream = sys.stderr
            stream.write(line + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def parse_level(level: str | int | None, default: int = logging.INFO) -> int:
    """A level by name (case-insensitive) or number; ValueError naming the accepted names."""
    if level is None or level == "":
        return default
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.strip().upper())
    if level.strip().upper() not in LEVELS or not isinstance(number, int):
        raise ValueError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    return number


def configure(
    fmt: str | None = None,
    level: str | int | None = None,
    *,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record of this process to ``stream`` (stderr by default) in ``fmt``.

    ``fmt`` None picks ``console`` when the stream is a terminal, ``json`` otherwise. ``level``
    (a name or a number) defaults to INFO. Calling it again replaces the handler it installed,
    so that a process never writes two formats."""
    number = parse_level(level)
    target = stream if stream is not None else sys.stderr
    is_tty = bool(getattr(target, "isatty", lambda: False)())
    if fmt is None or fmt == "":
        chosen: LogFormat = "console" if is_tty else "json"
    elif fmt in FORMATS:
        chosen = fmt
    else:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.setFormatter(formatter(chosen, colors=is_tty and chosen == "console"))
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    reset(root)
    root.addHandler(handler)
    root.setLevel(number)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if number <= logging.DEBUG else logging.WARNING
        )
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(number, logging.WARNING))
    # Code using structlog's own ``get_logger`` meets the same handler.
    structlog.configure(
        processors=[structlog.stdlib.filter_by_level, *_EMIT],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return handler


def reset(root: logging.Logger | None = None) -> None:
    """Remove the handler ``configure`` installed (tests restore the process this way)."""
    root = root or logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _HANDLER_MARK, False):
            root.removeHandler(handler)
            handler.close()


def is_configured() -> bool:
    return any(getattr(h, _HANDLER_MARK, False) for h in logging.getLogger().handlers)


@contextlib.contextmanager
def temporarily(
    fmt: str | None, level: str | int | None, stream: IO[str]
) -> Iterator[logging.Handler]:
    """``configure`` for the length of a block, then the logging set-up found before it."""
    root = logging.getLogger()
    before = [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]
    levels = {name: logging.getLogger(name).level for name in ("", *_CHATTY, *_QUIET)}
    for handler in before:
        root.removeHandler(handler)
    handler = configure(fmt, level, stream=stream)
    try:
        yield handler
    finally:
        reset(root)
        for name, number in levels.items():
            logging.getLogger(name).setLevel(number)
        for handler in before:
            root.addHandler(handler)


@contextlib.contextmanager
def into_file(path: Path, level: str | int | None = None) -> Iterator[None]:
    """JSON lines into ``path`` while the block runs, unless this process's logs are set up
    already (the demo's way of keeping its terminal for its own display)."""
    if is_configured():
        yield
        return
    with path.open("a", encoding="utf-8") as stream, temporarily("json", level, stream):
        yield


def elapsed_ms(start: float, end: float) -> float:
    """A duration in milliseconds, rounded for reading (``time.perf_counter`` values)."""
    return round((end - start) * 1000.0, 1)


def ids_of(args: Mapping[str, Any]) -> MutableMapping[str, Any]:
    """The identifiers among a job's arguments (``store_id``, ``connection_id``, ...)."""
    return {
        k: v
        for k, v in args.items()
        if k.endswith("_id") and isinstance(v, int | str) and not isinstance(v, bool)
    }
