"""Typed settings, read from ``STOCKSYNC_*`` environment variables and validated at start."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator may set. A wrong value stops the process with a clear message."""

    model_config = SettingsConfigDict(env_prefix="STOCKSYNC_", extra="ignore")

    data_dir: Path = Field(default=Path(".stocksync"), description="Where SQLite data lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; a postgresql:// URL selects PostgreSQL and procrastinate.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Fernet key(s), comma separated, newest first; generated if unset.",
    )
    # Level writes per call to a destination, and ledger rows per adjustment of a source.
    flush_batch_size: int = Field(default=250, ge=1, le=250)
    flush_debounce_ms: int = Field(default=200, ge=0, le=60_000)
    # At most one batch of writes per destination per interval: a busy source costs each
    # destination one call per interval, however many variants change.
    flush_interval_ms: int = Field(default=1000, ge=0, le=60_000)
    # Destination sales wait this long before they are applied to their source: the sales of a
    # burst then cost one adjustment call rather than one call each.
    ledger_linger_ms: int = Field(default=500, ge=0, le=60_000)
    # How long a destination decrease that no order explains yet is left as it is before it
    # is taken for a manual change and set back (the order webhooks of a checkout normally
    # arrive within seconds of its level report).
    sale_grace_seconds: float = Field(default=60.0, ge=0, le=3600)
    job_lease_seconds: float = Field(default=30.0, gt=0)
    job_max_attempts: int = Field(default=8, ge=1, le=50)
    # procrastinate (PostgreSQL): a worker silent for job_stalled_seconds is presumed dead and
    # its jobs run again.
    job_heartbeat_seconds: float = Field(default=10.0, gt=0)
    job_stalled_seconds: float = Field(default=30.0, gt=0)
    job_poll_seconds: float = Field(default=0.5, gt=0, le=60)

    @model_validator(mode="after")
    def _heartbeat_below_stall(self) -> Settings:
        if self.job_heartbeat_seconds >= self.job_stalled_seconds:
            raise ValueError(
                "STOCKSYNC_JOB_HEARTBEAT_SECONDS must be shorter than STOCKSYNC_JOB_STALLED_SECONDS"
            )
        return self

    worker_concurrency: int = Field(default=4, ge=1, le=64)
    activity_retention_days: int = Field(default=90, ge=1)
    # How often each store's safety nets run: its webhook subscriptions checked (and created
    # again if the platform dropped them), then reconciliation for a source and order backfill
    # for a destination.
    periodic_seconds: float = Field(default=600.0, ge=1.0)
    # Shopify app: webhooks are signed with the app's client secret. During a rotation Shopify
    # may sign with the previous secret for up to an hour; it is accepted until the deadline.
    shopify_api_secret: str | None = None
    shopify_api_secret_previous: str | None = None
    shopify_api_secret_previous_until: datetime | None = None
    public_url: str | None = Field(default=None, description="Public base URL for webhooks.")
    # The app's client id (Shopify calls it the API key) and the scopes an install asks for.
    shopify_api_key: str | None = None
    shopify_scopes: str = Field(
        default=(
            "read_products,write_products,read_inventory,write_inventory,read_orders,read_locations"
        ),
        pattern=r"^[a-z_]+(,[a-z_]+)*$",
    )
    # Where a shop's Admin API lives; a sandbox serves shops under its own URL instead.
    shopify_shop_url: str = Field(default="https://{shop}", pattern=r"^https?://.*\{shop\}")
    # B1 (beyond): a store may be source and destination at once only when this is on.
    hubs_enabled: bool = False
    webhook_max_bytes: int = Field(default=2_000_000, ge=1_000, le=50_000_000)
    # Logs (stocksync.logs): JSON lines on stderr, or a readable rendering when stderr is a
    # terminal; these choose. The level is INFO for serve and worker, WARNING for the one-shot
    # commands, unless set.
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return (
                value.upper()
                if value.lower() in ("debug", "info", "warning", "error")
                else (value.lower() or None)
            )
        return value

    def shopify_secrets(self, now: datetime) -> list[str]:
        """The secrets a webhook may be signed with at ``now`` (current first)."""
        found = [self.shopify_api_secret] if self.shopify_api_secret else []
        until = self.shopify_api_secret_previous_until
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
        if self.shopify_api_secret_previous and (until is None or now < until):
            found.append(self.shopify_api_secret_previous)
        return found

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("sqlite", "postgresql", "postgres")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value

    @property
    def resolved_database_url(self) -> str:
        """The async SQLAlchemy URL actually used."""
        return async_url(self.database_url or f"sqlite:///{self.data_dir / 'stocksync.db'}")

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")


def async_url(url: str) -> str:
    """Map a plain database URL onto the async driver we ship with."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
