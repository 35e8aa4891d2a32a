"""The knowledge base's manifest: format and library versions, embedding model, timestamps."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import IndexVersionError
from ..storage_utils import atomic_write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def read_manifest(kb_dir: Path) -> dict[str, Any] | None:
    path = Path(kb_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        fmt = int(data.get("format_version", 0))
    except (OSError, ValueError, TypeError, AttributeError) as exc:  # also not UTF-8, not an object
        raise IndexVersionError(f"{path}: unreadable manifest ({exc}); restore it or re-ingest") from exc
    if fmt > FORMAT_VERSION:
        raise IndexVersionError(
            f"{kb_dir} was written by kb-assistant {data.get('library_version', '?')} in format {fmt}; "
            f"this version ({__version__}) reads format <= {FORMAT_VERSION}: upgrade kb-assistant"
        )
    return data


def check_embedder(manifest: dict[str, Any], name: str, dim: int | None = None) -> None:
    emb = manifest.get("embedding") or {}
    if emb.get("name") and emb["name"] != name:
        raise IndexVersionError(
            f"this knowledge base was built with embedding model {emb['name']!r} but {name!r} is "
            "configured: use the same model, or re-ingest into a new knowledge base directory"
        )
    if dim is not None and emb.get("dim") and int(emb["dim"]) != dim:
        raise IndexVersionError(f"embedding dimension mismatch: index {emb['dim']}, model {dim}")


def write_manifest(kb_dir: Path, embedding: dict[str, Any],
                   previous: dict[str, Any] | None) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data = {
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "embedding": embedding,
        "created": (previous or {}).get("created", now),
        "updated": now,
    }
    atomic_write_json(Path(kb_dir) / MANIFEST, data)
    return data
