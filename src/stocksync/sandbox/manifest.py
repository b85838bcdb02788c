"""The manifest the sandbox writes on start, so that scripts and tests can find its shops."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> None:
    """Written atomically: a reader polling for the file never sees half of it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, target)


def read_manifest(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def shop_entry(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    for shop in manifest["shops"]:
        if shop["name"] == name or shop["domain"] == name:
            assert isinstance(shop, dict)
            return shop
    raise KeyError(name)
