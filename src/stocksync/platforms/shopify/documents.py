"""The GraphQL documents the client sends, loaded once from ``graphql/*.graphql``.

Every query and mutation lives in a ``.graphql`` file so that tests can validate each one
against Shopify's published schema. A line ``#import "name.graphql"`` pulls in a fragment
file (once, even when imported by several fragments).
"""

from __future__ import annotations

import re
from importlib import resources

_IMPORT = re.compile(r'^#import\s+"([A-Za-z0-9_]+\.graphql)"\s*$', re.MULTILINE)
_FOLDER = resources.files("stocksync.platforms.shopify").joinpath("graphql")


def _read(name: str) -> str:
    return _FOLDER.joinpath(name).read_text(encoding="utf-8")


def _resolve(name: str, seen: set[str]) -> list[str]:
    text = _read(name)
    parts: list[str] = []
    for imported in _IMPORT.findall(text):
        if imported not in seen:
            seen.add(imported)
            parts.extend(_resolve(imported, seen))
    parts.append(_IMPORT.sub("", text).strip())
    return parts


def _load_all() -> dict[str, str]:
    documents: dict[str, str] = {}
    for entry in sorted(_FOLDER.iterdir(), key=lambda e: e.name):
        name = entry.name
        if name.endswith(".graphql") and not name.startswith("_"):
            documents[name.removesuffix(".graphql")] = "\n\n".join(_resolve(name, {name})) + "\n"
    return documents


# Fragment files start with "_" and are only ever sent inside the operations importing them.
DOCUMENTS: dict[str, str] = _load_all()


def document(name: str) -> str:
    try:
        return DOCUMENTS[name]
    except KeyError:
        raise KeyError(f"no GraphQL document {name!r}") from None
