"""A generated catalog: realistic titles, tags (some hidden), SKUs (optionally with a few
duplicates and blanks, to exercise SKU hygiene), images, prices, stock and some untracked
variants. Deterministic for a given seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

from stocksync.sandbox.state import Product, Shop

ADJECTIVES = (
    "Classic",
    "Organic",
    "Vintage",
    "Everyday",
    "Premium",
    "Rugged",
    "Slim",
    "Heritage",
    "Urban",
    "Coastal",
    "Alpine",
    "Handmade",
    "Recycled",
    "Soft",
)
MATERIALS = (
    "Cotton",
    "Linen",
    "Wool",
    "Leather",
    "Canvas",
    "Bamboo",
    "Ceramic",
    "Oak",
    "Steel",
    "Denim",
    "Cashmere",
    "Cork",
)
NOUNS = (
    "T-Shirt",
    "Hoodie",
    "Tote Bag",
    "Mug",
    "Backpack",
    "Scarf",
    "Wallet",
    "Candle",
    "Notebook",
    "Water Bottle",
    "Beanie",
    "Apron",
    "Planter",
    "Sneakers",
    "Jacket",
)
VENDORS = ("Northwind", "Acme Goods", "Blue Harbor", "Maple & Co", "Studio Kiln")
TAGS = ("new", "sale", "bestseller", "summer", "winter", "gift", "eco", "limited")
HIDDEN_TAG = "stocksync-hidden"
SIZES = ("XS", "S", "M", "L", "XL", "XXL")
COLORS = ("Black", "White", "Navy", "Olive", "Sand", "Red", "Grey", "Teal")


@dataclass
class SeedSpec:
    products: int = 10
    variants: int = 3
    seed: int = 1
    hidden_ratio: float = 0.1
    duplicate_skus: int = 0
    blank_skus: int = 0
    untracked_ratio: float = 0.05
    max_stock: int = 50
    emit_webhooks: bool = False


def seed_shop(shop: Shop, spec: SeedSpec) -> list[Product]:
    rng = random.Random(spec.seed)  # noqa: S311 (seeded simulation, not security)
    created: list[Product] = []
    locations = shop.active_locations()
    sku_serial = 0
    skus: list[str] = []
    for index in range(spec.products):
        noun = rng.choice(NOUNS)
        title = f"{rng.choice(ADJECTIVES)} {rng.choice(MATERIALS)} {noun}"
        tags = rng.sample(TAGS, k=rng.randint(0, 3))
        if rng.random() < spec.hidden_ratio:
            tags.append(HIDDEN_TAG)
        count = max(1, spec.variants)
        combos = [(s, c) for c in COLORS for s in SIZES]
        rng.shuffle(combos)
        combos = combos[:count]
        base_price = rng.choice((9, 12, 15, 19, 24, 29, 35, 45, 59, 79))
        variants = []
        for size, color in combos:
            sku_serial += 1
            sku = f"{noun[:3].upper()}-{index + 1:04d}-{sku_serial:05d}"
            skus.append(sku)
            stock = {loc.id: rng.randint(0, spec.max_stock) for loc in locations[:2]}
            variants.append(
                {
                    "sku": sku,
                    "price": f"{base_price + rng.choice((0, 0, 2, 5)) - 0.01:.2f}",
                    "compare_at_price": f"{base_price + 10 - 0.01:.2f}" if "sale" in tags else None,
                    "barcode": f"{rng.randrange(10**12, 10**13)}",
                    "option_values": [("Size", size), ("Color", color)] if count > 1 else [],
                    "tracked": rng.random() >= spec.untracked_ratio,
                    "inventory_policy": "CONTINUE" if rng.random() < 0.05 else "DENY",
                    "weight": round(rng.uniform(0.1, 2.0), 2),
                    "quantities": stock,
                }
            )
        product = shop.create_product(
            title=title,
            vendor=rng.choice(VENDORS),
            product_type=noun,
            description_html=f"<p>{title}, made to last.</p>",
            tags=tags,
            status="ACTIVE" if rng.random() > 0.05 else "DRAFT",
            variants=variants,
            image_urls=[
                (f"https://cdn.example.com/sandbox/{shop.name}/{index + 1}-{n}.jpg", title)
                for n in range(rng.randint(1, 3))
            ],
            emit=spec.emit_webhooks,
        )
        created.append(product)
    all_variants = [shop.variants[v] for p in created for v in p.variant_ids]
    # SKU hygiene cases: some variants share another's SKU, some have none.
    picks = rng.sample(
        all_variants, k=min(len(all_variants), spec.duplicate_skus + spec.blank_skus)
    )
    picked = {v.id for v in picks}
    pool = [v for v in all_variants if v.id not in picked]
    sources = rng.sample(pool, k=min(len(pool), spec.duplicate_skus))
    for i, variant in enumerate(picks):
        if i < len(sources):
            variant.sku = sources[i].sku
        elif i >= spec.duplicate_skus:
            variant.sku = None if i % 2 else ""
    return created
