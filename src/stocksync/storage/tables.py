"""The relational schema, shared by SQLite and PostgreSQL.

Platform identifiers (Shopify gids, WooCommerce ids) are stored as text: they exceed 2^53 and
must never pass through a float. Our own keys are integers.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)

from stocksync.storage.types import UtcDateTime

# Autoincrement keys: SQLite only autoincrements an INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _ts(name: str, nullable: bool = True) -> Column[object]:
    return Column(name, UtcDateTime(), nullable=nullable)


stores = Table(
    "stores",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform", String(32), nullable=False),
    # The platform's own name for the shop: a myshopify domain, a WooCommerce site URL.
    Column("external_id", String(255), nullable=False),
    Column("name", String(255), nullable=False),
    Column("is_source", Boolean, nullable=False, default=False),
    Column("is_destination", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("credentials", LargeBinary, nullable=True),  # Fernet token, never plain text
    Column("api_version", String(16), nullable=True),
    Column("base_url", String(512), nullable=True),
    Column("key_hash", String(64), nullable=True, unique=True),
    Column("key_encrypted", LargeBinary, nullable=True),
    _ts("key_rotated_at"),
    Column("hidden_tags", JSON, nullable=False),
    Column("plan_product_limit", Integer, nullable=True),
    Column("settings", JSON, nullable=False),
    _ts("created_at", nullable=False),
    UniqueConstraint("platform", "external_id", name="uq_stores_platform_external"),
)

locations = Table(
    "locations",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("name", String(255), nullable=False, default=""),
    Column("active", Boolean, nullable=False, default=True),
    Column("shared", Boolean, nullable=False, default=False),
    Column("priority", Integer, nullable=True),
    UniqueConstraint("store_id", "external_id", name="uq_locations_store_external"),
)

connections = Table(
    "connections",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("source_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("destination_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("receiving_location", String(255), nullable=True),
    Column("settings", JSON, nullable=False),
    _ts("created_at", nullable=False),
    _ts("disconnected_at"),
    # Writes to the destination are paced: the next flush does not start before this.
    _ts("flush_not_before"),
    # The status an uninstall suspended (active or paused): reinstalling restores it (B5).
    Column("suspended_from", String(16), nullable=True),
    UniqueConstraint("source_store_id", "destination_store_id", name="uq_connections_pair"),
)

product_links = Table(
    "product_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connection_id", ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("source_product_id", String(255), nullable=False),
    Column("destination_product_id", String(255), nullable=True),
    Column("status", String(16), nullable=False, default="active"),
    _ts("created_at", nullable=False),
    UniqueConstraint("connection_id", "source_product_id", name="uq_product_links_source"),
)

variant_links = Table(
    "variant_links",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("connection_id", ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("product_link_id", ForeignKey("product_links.id", ondelete="CASCADE"), nullable=True),
    # Denormalised so that a webhook finds its links with one indexed lookup.
    Column("source_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("destination_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("source_variant_id", String(255), nullable=False),
    Column("source_item_id", String(255), nullable=False),
    Column("destination_variant_id", String(255), nullable=False),
    Column("destination_item_id", String(255), nullable=False),
    Column("sku", String(255), nullable=False),
    Column("tracked", Boolean, nullable=False, default=True),
    Column("status", String(16), nullable=False, default="active"),
    Column("broken_reason", Text, nullable=True),
    # When the link was made (or made again): an order placed before it never counts for it
    # (B15, B16). Rows from before this column took their product link's creation time.
    _ts("created_at"),
    UniqueConstraint("connection_id", "source_item_id", name="uq_variant_links_source_item"),
    UniqueConstraint("connection_id", "destination_item_id", name="uq_variant_links_dest_item"),
    Index("ix_variant_links_source", "source_store_id", "source_item_id"),
    Index("ix_variant_links_dest_item", "destination_store_id", "destination_item_id"),
    Index("ix_variant_links_dest_variant", "destination_store_id", "destination_variant_id"),
)

inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("platform", String(32), nullable=False),
    # The store as the platform names it: an unknown store's events are still recorded.
    Column("store_ref", String(255), nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    # The adapter's normalised reading of the payload (see stocksync.domain.codec).
    Column("event", JSON, nullable=True),
    Column("status", String(16), nullable=False, default="pending"),
    Column("error", Text, nullable=True),
    _ts("received_at", nullable=False),
    _ts("processed_at"),
    UniqueConstraint("platform", "store_ref", "event_id", name="uq_inbox_event"),
)

# Per store, inventory item and location: what stocksync last read and last wrote. A source
# keeps one row per item under the location key ``*`` (the sum of its shared locations).
# sync_state's location key for a source's summed level over its shared locations.
SOURCE_LOCATION = "*"

sync_state = Table(
    "sync_state",
    metadata,
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", String(255), primary_key=True),
    Column("location", String(255), primary_key=True),
    Column("last_read", BigInteger, nullable=True),
    Column("read_version", BigInteger, nullable=False, default=0),
    Column("last_written", BigInteger, nullable=True),
    Column("write_version", BigInteger, nullable=False, default=0),
    _ts("updated_at", nullable=False),
    # The platform's time (epoch seconds) of the latest level report taken into last_read:
    # reports of a level are ordered by it (engine/levels_reported.py).
    Column("reported_at", BigInteger, nullable=True),
    # Two reports of the same second disagreed: only a read can tell the level.
    Column("needs_read", Boolean, nullable=False, default=False, server_default=false()),
    # The level a write in flight is setting: its echo may arrive before the write is recorded.
    Column("writing", BigInteger, nullable=True),
    # last_read came from a level report, not from a read or a write of ours: a destination
    # writes it again (compared with it) even when it already equals the target.
    Column("unconfirmed", Boolean, nullable=False, default=False, server_default=false()),
    # A source's summed level (location "*"): when the last read that fed it started. A sale
    # applied to the source after that is not in the level yet (domain/sales.py).
    _ts("read_at"),
    # A destination's level: units it went below its target that no order explains yet are
    # ``unexplained - explained`` (each column written by one side: level observations set
    # the first, order snapshots add to the second, so neither overwrites the other), since
    # ``lowered_at``; not raised again until orders explain them or the sale grace ends (B24).
    Column("unexplained", BigInteger, nullable=False, default=0, server_default=text("0")),
    Column("explained", BigInteger, nullable=False, default=0, server_default=text("0")),
    _ts("lowered_at"),
)

# Source items whose level must be read again (coalesced: one row per item, seq bumps).
source_dirty = Table(
    "source_dirty",
    metadata,
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", String(255), primary_key=True),
    Column("seq", BigInteger, nullable=False, default=1),
    # False when reports already gave every shared location's level: no read is needed.
    Column("must_read", Boolean, nullable=False, default=True, server_default=true()),
)

# Destination variants whose level must be written (coalesced: one row per link, seq bumps).
flush_pending = Table(
    "flush_pending",
    metadata,
    Column("connection_id", ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True),
    Column("variant_link_id", ForeignKey("variant_links.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, nullable=False, default=1),
    Column("force_read", Boolean, nullable=False, default=False),
)

# What stocksync knows of each destination order: whether it was counted and at which version.
orders_seen = Table(
    "orders_seen",
    metadata,
    Column("destination_store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    # An order may hold products of several sources; each connection counts its own lines.
    Column("connection_id", ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True),
    Column("financial_status", String(32), nullable=False),
    Column("cancelled", Boolean, nullable=False, default=False),
    Column("counted", Boolean, nullable=False, default=False),
    Column("version", String(64), nullable=False),
    _ts("updated_at", nullable=False),
    # When the order was placed, as version text: the platform's word, or, when it does not
    # say, when stocksync first saw it. Written once; later snapshots that do not say use it.
    Column("order_created_at", String(64), nullable=True),
    # Once any snapshot showed the order paid in full, it was paid (B15): never reset.
    Column("paid_in_full", Boolean, nullable=False, default=False, server_default=false()),
    # The quantities applied at ``version``: a snapshot of that version with other
    # quantities cannot be ordered against them, and changes no count.
    Column("fingerprint", String(64), nullable=True),
)

# Linked lines of destination orders, one row per line. Units known but not counted (unpaid
# on a paid-only connection) are held: the destination took them off at checkout, so its
# target is lowered by them until the order counts, is cancelled or voided (B24).
order_holds = Table(
    "order_holds",
    metadata,
    Column("destination_store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    Column("line_id", String(255), primary_key=True),
    Column("connection_id", ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("variant_link_id", ForeignKey("variant_links.id", ondelete="CASCADE"), nullable=False),
    # Held now (0 once the order counts or ends), and taken by the destination for the line:
    # growth of ``taken`` explains a decrease seen there.
    Column("held", BigInteger, nullable=False),
    Column("taken", BigInteger, nullable=False),
    Column("version", String(64), nullable=False),
    Index("ix_order_holds_link", "variant_link_id"),
)

# Per counted order line: units counted against the source and units given back.
order_lines = Table(
    "order_lines",
    metadata,
    Column("destination_store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    Column("line_id", String(255), primary_key=True),
    Column("connection_id", ForeignKey("connections.id", ondelete="CASCADE"), nullable=False),
    Column("variant_link_id", ForeignKey("variant_links.id", ondelete="SET NULL"), nullable=True),
    Column("root_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("root_item_id", String(255), nullable=False),
    Column("counted", BigInteger, nullable=False, default=0),
    Column("restocked", BigInteger, nullable=False, default=0),
    Column("version", String(64), nullable=False),
    Column("source_location", String(255), nullable=True),
    # Edits recorded for the line: the n-th edit's natural key ends in n.
    Column("changes", BigInteger, nullable=False, default=0, server_default=text("0")),
)

# One row per counted order line, order edit and refund line; the unique natural key makes a
# second count impossible. Applied to the root source by a job enqueued in the same transaction.
ledger = Table(
    "ledger",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("destination_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("natural_key", String(512), nullable=False),
    Column("order_id", String(255), nullable=False),
    Column("line_id", String(255), nullable=False),
    Column("root_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("root_item_id", String(255), nullable=False),
    Column("delta", BigInteger, nullable=False),
    Column("location", String(255), nullable=True),
    Column("status", String(16), nullable=False, default="pending"),
    Column("idempotency_key", String(128), nullable=False),
    _ts("created_at", nullable=False),
    _ts("applied_at"),
    # The batch this row is sent in (ledger_batches.id), fixed before the platform call; a
    # row keeps status 'pending' until its batch is applied.
    Column("batch_id", BigInteger, nullable=True),
    UniqueConstraint("destination_store_id", "kind", "natural_key", name="uq_ledger_natural"),
    Index("ix_ledger_pending", "status", "root_store_id"),
    Index("ix_ledger_batch", "batch_id"),
    # Sales of an item not in its source level yet (engine/sales.py), looked up per flush.
    Index("ix_ledger_root_item", "root_store_id", "root_item_id"),
)

# Ledger rows sent to one root source in one adjustment call. Recorded before the call, with
# its idempotency key, so that a retry or a crash resends exactly the same changes under the
# same key. ``key_seed`` is a random UUID; the key is derived from it and ``attempt``, which
# moves on only when the platform says an attempt under the current key failed.
ledger_batches = Table(
    "ledger_batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("root_store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=False),
    Column("key_seed", String(64), nullable=False),
    Column("attempt", Integer, nullable=False, server_default=text("0")),
    Column("idempotency_key", String(128), nullable=False),
    # open (to send), applied, split (refused for one of its rows), failed (its one row set
    # aside)
    Column("status", String(16), nullable=False, server_default=text("'open'")),
    _ts("created_at", nullable=False),
    _ts("applied_at"),
    UniqueConstraint("idempotency_key", name="uq_ledger_batches_idempotency_key"),
    Index("ix_ledger_batches_open", "root_store_id", "status"),
)

# Orders a backfill found changed and handed to ``sync_order``: kept until the order's state
# is applied, so that a sync given up (its store unreachable too long) is scheduled again.
orders_to_sync = Table(
    "orders_to_sync",
    metadata,
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("order_id", String(255), primary_key=True),
    _ts("created_at", nullable=False),
)

# Embedded job queue (SQLite); PostgreSQL uses procrastinate's own tables instead.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("queue", String(64), nullable=False, default="default"),
    Column("task", String(128), nullable=False),
    Column("args", JSON, nullable=False),
    Column("lock", String(255), nullable=True),
    Column("queueing_lock", String(255), nullable=True),
    Column("status", String(16), nullable=False, default="todo"),
    Column("priority", Integer, nullable=False, default=0),
    _ts("scheduled_at", nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    _ts("lease_until"),
    Column("worker", String(128), nullable=True),
    Column("last_error", Text, nullable=True),
    _ts("created_at", nullable=False),
    _ts("finished_at"),
    Index(
        "uq_jobs_queueing_lock_todo",
        "queueing_lock",
        unique=True,
        sqlite_where=text("status = 'todo'"),
        postgresql_where=text("status = 'todo'"),
    ),
    Index("ix_jobs_fetch", "status", "scheduled_at"),
    Index("ix_jobs_lock", "lock", "status"),
)

activity_log = Table(
    "activity_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), nullable=True),
    _ts("at", nullable=False),
    Column("level", String(8), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
    # How to retry: a task name and its arguments, when the failure is retryable.
    Column("retry", JSON, nullable=True),
    Index("ix_activity_store_at", "store_id", "at"),
)

# Per store, how far a poll has read (e.g. the last order version backfilled).
store_cursors = Table(
    "store_cursors",
    metadata,
    Column("store_id", ForeignKey("stores.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

# Wrong unique keys, for rate limiting connection attempts (B2).
key_attempts = Table(
    "key_attempts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("actor", String(255), nullable=False),
    _ts("at", nullable=False),
    Column("success", Boolean, nullable=False),
    Index("ix_key_attempts_actor_at", "actor", "at"),
)
