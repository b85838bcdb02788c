"""What every command that opens the database checks first, so that an expected condition (a
wrong database URL, the server down, an old schema, a bad key, an unwritable data directory, a
port in use) stops it with one plain line naming what is wrong and what to do, never a
traceback.

On the embedded SQLite default, ``serve``, ``worker`` and the store commands bring the database
to the latest schema themselves: a laptop user has no setup step. On PostgreSQL the schema is
the operator's (several processes, perhaps several versions during a deploy), so they refuse
until `stocksync migrate` has run."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import TypeVar

from cryptography.fernet import Fernet
from sqlalchemy import func, or_, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.config import Settings
from stocksync.storage.crypto import SecretError, Vault
from stocksync.storage.db import create_engine
from stocksync.storage.tables import stores

_T = TypeVar("_T")

# How long a database may take to answer the first connection: an unreachable host otherwise
# holds the command for the operating system's connect timeout (minutes).
CONNECT_DEADLINE_SECONDS = 10.0

# Fernet tokens tried against the configured keys: the store credentials and unique keys are
# the only secrets at rest.
_PROBED_SECRETS = 20

# As uvicorn's default.
LISTEN_BACKLOG = 2048

# Exit status: 2 for a configuration value that cannot work, 1 for the world (a server down, a
# port in use, a schema behind).
CONFIG = 2
FAILURE = 1


class StartupError(Exception):
    """An expected condition that stops a command before it starts: its message is one line
    saying what is wrong and what to do."""

    def __init__(self, message: str, *, code: int = FAILURE) -> None:
        super().__init__(one_line(message))
        self.code = code


class Schema(Enum):
    """What a command does about the database's schema."""

    ENSURE = "ensure"  # SQLite: migrate to the head; PostgreSQL: refuse unless at the head
    ANY = "any"  # `stocksync migrate` itself: it is about to change the schema


def one_line(message: str) -> str:
    """A driver's message on one line: its first line is the one that says what happened
    (psycopg adds hints, SQLAlchemy the statement and a link)."""
    first = next((line.strip() for line in str(message).splitlines() if line.strip()), "")
    return first or type(message).__name__


def redact(url: str | URL) -> str:
    return make_url(url).render_as_string(hide_password=True)


def database_url(settings: Settings) -> URL:
    """The database URL, parsed, with a driver this process can load and run asynchronously."""
    raw = settings.resolved_database_url
    named = "STOCKSYNC_DATABASE_URL" if settings.database_url else "STOCKSYNC_DATA_DIR"
    try:
        url = make_url(raw)
        dialect = url.get_dialect(_is_async=True)
    except (ArgumentError, ValueError) as exc:
        # The URL itself may hold a password: it is not repeated.
        raise StartupError(
            f"{named} is not a usable database URL ({one_line(str(exc))}): "
            "give postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:///PATH",
            code=CONFIG,
        ) from None
    if not getattr(dialect, "is_async", False):
        raise StartupError(
            f"{named}: the driver {url.drivername!r} is not asynchronous: "
            "give postgresql://... or sqlite:///... without a driver name",
            code=CONFIG,
        )
    return url


def sqlite_path(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def writable_directory(path: Path, what: str, setting: str) -> None:
    """Create ``path`` if needed and prove a file can be written in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, FileExistsError) or exc.errno in (errno.ENOTDIR, errno.EEXIST):
            reason = "a file is in the way"
        raise StartupError(
            f"cannot write {what} in {path} ({reason}): "
            f"set {setting} to a directory this user can write, or fix its permissions"
        ) from None


def _key_file(settings: Settings) -> Path:
    return settings.data_dir / "secret.key"


def configured_keys(settings: Settings) -> list[str] | None:
    """The Fernet keys from STOCKSYNC_SECRET_KEY or the data directory's key file, checked;
    None when there is neither (a key is generated on first use)."""
    if settings.secret_key:
        keys = [k for k in settings.secret_key.split(",") if k.strip()]
        where = "STOCKSYNC_SECRET_KEY"
    else:
        path = _key_file(settings)
        try:
            keys = [path.read_text().strip()]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StartupError(
                f"cannot read the secret key {path} ({exc.strerror}): fix its permissions, "
                "or set STOCKSYNC_SECRET_KEY"
            ) from None
        where = str(path)
    for key in keys:
        try:
            Fernet(key.strip().encode())
        except ValueError:
            raise StartupError(
                f"{where} is not a valid Fernet key (32 url-safe base64-encoded bytes): set it "
                "to the key the stored credentials were encrypted with (on a new installation, "
                "to one from `cryptography.fernet.Fernet.generate_key()`)",
                code=CONFIG,
            ) from None
    return keys


async def _connect(url: URL, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
    engine = create_engine(url.render_as_string(hide_password=False))
    try:
        async with asyncio.timeout(CONNECT_DEADLINE_SECONDS):
            conn = await engine.connect()
        try:
            return await work(conn)
        finally:
            await conn.close()
    except TimeoutError:
        raise StartupError(
            f"the database at {redact(url)} did not answer within "
            f"{CONNECT_DEADLINE_SECONDS:.0f} s: check that its server is running and reachable"
        ) from None
    except DBAPIError as exc:
        raise StartupError(
            f"cannot use the database at {redact(url)} ({one_line(str(exc.orig))}): check "
            "STOCKSYNC_DATABASE_URL and that the database server is running"
        ) from None
    except OSError as exc:
        raise StartupError(
            f"cannot reach the database at {redact(url)} ({exc.strerror or exc}): check "
            "STOCKSYNC_DATABASE_URL and that the database server is running"
        ) from None
    finally:
        await engine.dispose()


async def _revision(conn: AsyncConnection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return await conn.run_sync(
        lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
    )


async def _schema_state(conn: AsyncConnection) -> tuple[str | None, bool]:
    """The schema's revision, and (PostgreSQL) whether procrastinate's tables are there."""
    current = await _revision(conn)
    queue = True
    if conn.dialect.name == "postgresql":
        queue = bool(
            (
                await conn.execute(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"))
            ).scalar()
        )
    await conn.rollback()
    return current, queue


def _known(revision: str) -> bool:
    from stocksync.storage.migrate import script_directory

    return any(r.revision == revision for r in script_directory().walk_revisions())


def _newer_than_code(url: URL, current: str) -> StartupError:
    return StartupError(
        f"the database at {redact(url)} is at migration {current}, which this version of "
        "stocksync does not know: it was migrated by a newer version; run that version"
    )


async def check_schema(url: URL, *, migrate: bool) -> None:
    """SQLite with ``migrate``: bring the schema to the head. Otherwise: refuse unless it is
    there already."""
    # Alembic is loaded only here: a command refused for its configuration stays quick.
    from alembic.util import CommandError

    from stocksync.storage.migrate import head_revision, upgrade

    head = head_revision()
    current, queue = await _connect(url, _schema_state)
    if current is not None and current != head and not _known(current):
        raise _newer_than_code(url, current)
    if current == head and queue:
        return
    if migrate and url.get_backend_name() == "sqlite":
        try:
            # In a thread: Alembic runs its own event loop.
            await asyncio.to_thread(upgrade, url.render_as_string(hide_password=False))
        except (SQLAlchemyError, CommandError, OSError) as exc:
            raise StartupError(
                f"the database at {redact(url)} could not be brought to migration {head} "
                f"({one_line(str(exc))}): see `stocksync doctor`"
            ) from None
        return
    if current == head:
        raise StartupError(
            f"procrastinate's tables are missing from {redact(url)}: run `stocksync migrate`"
        )
    state = f"is at migration {current}" if current else "has no stocksync schema"
    raise StartupError(
        f"the database at {redact(url)} {state}, not at {head}: run `stocksync migrate`"
    )


async def _secrets_at_rest(conn: AsyncConnection) -> list[bytes]:
    tokens = await conn.scalars(
        select(func.coalesce(stores.c.credentials, stores.c.key_encrypted))
        .where(or_(stores.c.credentials.is_not(None), stores.c.key_encrypted.is_not(None)))
        .order_by(stores.c.id.desc())
        .limit(_PROBED_SECRETS)
    )
    found = [bytes(token) for token in tokens]
    await conn.rollback()
    return found


async def check_secret(settings: Settings, url: URL) -> None:
    """The keys are well formed and open what the database holds. With no key anywhere, a key
    is generated on first use: refused when the database already holds secrets, since they were
    encrypted with a key this process does not have (the data directory changed, or another
    host's)."""
    keys = configured_keys(settings)
    held = await _connect(url, _secrets_at_rest)
    if keys is None:
        if held:
            raise StartupError(
                f"STOCKSYNC_SECRET_KEY is not set and {_key_file(settings)} does not exist, but "
                "the database holds store credentials encrypted with a key: set "
                "STOCKSYNC_SECRET_KEY to that key (or restore its secret.key file)",
                code=CONFIG,
            )
        writable_directory(settings.data_dir, "the generated secret key", "STOCKSYNC_DATA_DIR")
        return
    if not held:
        return
    vault = Vault(keys)
    for token in held:
        try:
            vault.decrypt(token)
            return
        except SecretError:
            continue
    raise StartupError(
        "no stored store credential can be decrypted with the configured secret key: set "
        "STOCKSYNC_SECRET_KEY to the key they were encrypted with (newest first, then older "
        "ones, comma separated)",
        code=CONFIG,
    )


async def prepare(
    settings: Settings, *, schema: Schema = Schema.ENSURE, database: bool = True
) -> None:
    """Everything a command needs before it opens the database, checked in the order an
    operator would fix it; raises StartupError. ``database=False`` checks only what needs no
    connection (``doctor`` connects and reports on its own)."""
    url = database_url(settings)
    path = sqlite_path(url)
    if path is not None:
        setting = "STOCKSYNC_DATABASE_URL" if settings.database_url else "STOCKSYNC_DATA_DIR"
        writable_directory(path.parent, "the SQLite database", setting)
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise StartupError(
                f"cannot read and write the SQLite database {path}: fix its permissions"
            )
    if schema is Schema.ENSURE:
        # A key that cannot be read is said before the database is touched.
        configured_keys(settings)
    if not database:
        return
    if schema is Schema.ENSURE:
        await check_schema(url, migrate=True)
        await check_secret(settings, url)
    else:
        # The schema may not exist yet, and no secret is read: only the connection is proved.
        await _connect(url, _rollback)


async def _rollback(conn: AsyncConnection) -> None:
    await conn.rollback()


def check_startup(
    settings: Settings, *, schema: Schema = Schema.ENSURE, database: bool = True
) -> None:
    """``prepare`` for a command that has no event loop yet."""
    asyncio.run(prepare(settings, schema=schema, database=database))


def listening_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that a port in use is said plainly before anything
    starts (uvicorn binds only after the app's startup has run)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(
            f"cannot listen on {host}: {exc.strerror}: give --host an address of this machine",
            code=CONFIG,
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"port {port} on {host} is already in use: stop what listens there, "
                "or choose another with --port"
            ) from None
        raise StartupError(
            f"cannot listen on {host}:{port} ({exc.strerror}): choose another --host or --port"
        ) from None
    # Listening at once: a request arriving while the database is migrated waits in the
    # backlog for the app instead of being refused.
    sock.listen(LISTEN_BACKLOG)
    return sock
