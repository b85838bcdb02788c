"""Catalog: import (B7), mapping existing products (B11), hidden tags (B6), plan limits (B3).

Every link is made by SKU under the hygiene rules (B12). A product created at import is
preceded by a lookup of its SKUs on the destination, so that a retried import links what an
earlier attempt created instead of creating it twice."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stocksync.domain.ports import Product, ProductDraft, StorePlatform
from stocksync.domain.skus import SkuProblem, hygiene, match_by_sku, normalise_sku
from stocksync.engine.marks import mark_pending, mark_source_dirty
from stocksync.engine.records import ConnectionRecord, StoreRecord, load_connection, load_store
from stocksync.engine.runtime import Runtime
from stocksync.engine.stores import StoreError
from stocksync.storage import activity
from stocksync.storage.sql import insert_ignore
from stocksync.storage.tables import connections, product_links, variant_links


class PlanLimitError(StoreError):
    """B3: the destination's plan does not allow this many synced products."""


def is_hidden(product: Product, hidden_tags: Sequence[str]) -> bool:
    wanted = {t.strip().lower() for t in hidden_tags}
    return any(t.strip().lower() in wanted for t in product.tags)


@dataclass
class ProductReport:
    source_product_id: str
    title: str
    destination_product_id: str | None = None
    linked: int = 0
    problems: list[SkuProblem] = field(default_factory=list)
    created: bool = False


@dataclass
class CatalogReport:
    products: list[ProductReport] = field(default_factory=list)
    refused: str | None = None

    @property
    def linked_variants(self) -> int:
        return sum(p.linked for p in self.products)


async def _context(
    rt: Runtime, connection_id: int
) -> tuple[ConnectionRecord, StoreRecord, StoreRecord]:
    async with rt.db.begin() as conn:
        record = await load_connection(conn, connection_id)
        if record is None or record.status != "active":
            raise StoreError("the connection is not active")
        source = await load_store(conn, record.source_store_id)
        dest = await load_store(conn, record.destination_store_id)
    assert source is not None
    assert dest is not None
    return record, source, dest


async def _synced_products(conn: AsyncConnection, destination_store_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(product_links)
                .join(connections, connections.c.id == product_links.c.connection_id)
                .where(
                    connections.c.destination_store_id == destination_store_id,
                    product_links.c.status.in_(("active", "paused")),
                )
            )
        ).scalar_one()
    )


async def _link(
    rt: Runtime,
    conn: AsyncConnection,
    record: ConnectionRecord,
    source_product: Product,
    dest_product: Product,
    report: ProductReport,
) -> None:
    match = match_by_sku(source_product.variants, dest_product.variants)
    report.problems.extend(match.problems)
    pl = await insert_ignore(
        conn,
        product_links,
        {
            "connection_id": record.id,
            "source_product_id": source_product.id,
            "destination_product_id": dest_product.id,
            "status": "active",
            "created_at": rt.clock(),
        },
        conflict=("connection_id", "source_product_id"),
        returning=("id",),
    )
    product_link_id = (
        pl[0]
        if pl is not None
        else (
            await conn.execute(
                select(product_links.c.id).where(
                    product_links.c.connection_id == record.id,
                    product_links.c.source_product_id == source_product.id,
                )
            )
        ).scalar_one()
    )
    new_links: list[tuple[int, int, int]] = []
    for m in match.matched:
        if not m.source.tracked:
            report.problems.append(
                SkuProblem(m.source.id, m.source.sku, "inventory is not tracked; no level to sync")
            )
        row = await insert_ignore(
            conn,
            variant_links,
            {
                "connection_id": record.id,
                "product_link_id": product_link_id,
                "source_store_id": record.source_store_id,
                "destination_store_id": record.destination_store_id,
                "source_variant_id": m.source.id,
                "source_item_id": m.source.item_id,
                "destination_variant_id": m.destination.id,
                "destination_item_id": m.destination.item_id,
                "sku": normalise_sku(m.source.sku),
                "tracked": m.source.tracked,
                "status": "active" if m.source.tracked else "untracked",
                # Orders placed before this instant never count for this link (B15, B16).
                "created_at": rt.clock(),
            },
            conflict=("connection_id", "source_item_id"),
            returning=("id",),
        )
        if row is not None:
            report.linked += 1
            if m.source.tracked:
                new_links.append((record.id, row[0], record.destination_store_id))
    # Levels: read the source, then write every new link (forced: the destination is new).
    await mark_source_dirty(
        rt, conn, record.source_store_id, [m.source.item_id for m in match.matched]
    )
    await mark_pending(rt, conn, new_links, force_read=True)


def _draft(product: Product) -> ProductDraft:
    return ProductDraft(
        title=product.title,
        description=product.description,
        vendor=product.vendor,
        product_type=product.product_type,
        tags=product.tags,
        status=product.status,
        images=product.images,
        options=product.options,
        variants=product.variants,
    )


async def import_products(
    rt: Runtime,
    connection_id: int,
    product_ids: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CatalogReport:
    """B7: copy visible source products to the destination and link them by SKU.

    ``progress(done, total)`` is called after each product (the CLI's progress bar)."""
    record, source, dest = await _context(rt, connection_id)
    src_platform, dst_platform = rt.platforms(source), rt.platforms(dest)
    products = await src_platform.list_products()
    if product_ids is not None:
        wanted = set(product_ids)
        products = [p for p in products if p.id in wanted]
    visible = [p for p in products if not is_hidden(p, source.hidden_tags)]
    report = CatalogReport()
    async with rt.db.begin() as conn:
        already = {
            r[0]
            for r in await conn.execute(
                select(product_links.c.source_product_id).where(
                    product_links.c.connection_id == record.id,
                    product_links.c.status.in_(("active", "paused")),
                )
            )
        }
        count = await _synced_products(conn, dest.id)
    todo = [p for p in visible if p.id not in already]
    limit = dest.plan_product_limit
    if limit is not None and count + len(todo) > limit:
        report.refused = (
            f"{dest.name}'s plan syncs at most {limit} products; {count} are synced and this "
            f"import would add {len(todo)}. Choose fewer products or change plan."
        )
        async with rt.db.begin() as conn:
            await activity.record(
                conn, store_id=dest.id, level="warning", kind="plan_limit", message=report.refused
            )
        raise PlanLimitError(report.refused)
    if progress is not None:
        progress(0, len(todo))
    for done, product in enumerate(todo, start=1):
        item = ProductReport(product.id, product.title)
        report.products.append(item)
        usable, _ = hygiene(product.variants)
        found = await dst_platform.find_variants_by_sku(sorted(usable))
        existing = [variants[0] for variants in found.values() if variants]
        dest_product: Product | None = None
        if existing:
            # An earlier attempt (or the merchant) already created it: link, never duplicate.
            owner = existing[0].product_id
            dest_product = (
                await dst_platform.get_product(owner)
                if owner is not None
                else await _product_of_variant(dst_platform, existing[0].id)
            )
        if dest_product is None:
            dest_product = await dst_platform.create_product(_draft(product))
            item.created = True
        item.destination_product_id = dest_product.id
        async with rt.db.begin() as conn:
            await _link(rt, conn, record, product, dest_product, item)
            await activity.record(
                conn,
                store_id=dest.id,
                level="info",
                kind="product_imported",
                message=f"imported {product.title!r}: {item.linked} variants linked",
                details={
                    "source_product_id": product.id,
                    "destination_product_id": dest_product.id,
                    "problems": [p.reason for p in item.problems],
                },
            )
        if progress is not None:
            progress(done, len(todo))
    return report


async def _product_of_variant(platform: StorePlatform, variant_id: str) -> Product | None:
    """For a platform whose SKU lookup does not say which product a variant belongs to."""
    for p in await platform.list_products():
        if any(v.id == variant_id for v in p.variants):
            return p
    return None


async def map_existing(rt: Runtime, connection_id: int) -> CatalogReport:
    """B11: link a destination's existing products to the source's by SKU, inventory only."""
    record, source, dest = await _context(rt, connection_id)
    src_products = [
        p
        for p in await rt.platforms(source).list_products()
        if not is_hidden(p, source.hidden_tags)
    ]
    dst_products = await rt.platforms(dest).list_products()
    _, dst_problems = hygiene([v for p in dst_products for v in p.variants])
    dst_usable, _ = hygiene([v for p in dst_products for v in p.variants])
    owner = {v.id: p for p in dst_products for v in p.variants}
    report = CatalogReport()
    for product in src_products:
        item = ProductReport(product.id, product.title)
        report.products.append(item)
        usable, problems = hygiene(product.variants)
        item.problems.extend(problems)
        targets = {owner[dst_usable[s].id].id for s in usable if s in dst_usable}
        if not targets:
            item.problems.append(
                SkuProblem(product.id, "", "no destination product has any of its SKUs")
            )
            continue
        for target_id in sorted(targets):
            dest_product = next(p for p in dst_products if p.id == target_id)
            item.destination_product_id = target_id
            async with rt.db.begin() as conn:
                await _link(rt, conn, record, product, dest_product, item)
    async with rt.db.begin() as conn:
        await activity.record(
            conn,
            store_id=dest.id,
            level="info",
            kind="products_mapped",
            message=f"mapped existing products: {report.linked_variants} variants linked",
            details={"problems": len(dst_problems) + sum(len(p.problems) for p in report.products)},
        )
    return report
