"""Document routes of the REST server: upload + ingest (size-limited, path-safe), list, delete.

Uploaded files are stored flat under ``<kb>/uploads/`` with a sanitised base name; a name holding a
directory part (``..``, ``/``, ``\\``, a drive letter) is rejected, not silently rewritten, so a client
cannot write outside that folder nor overwrite a file it did not mean to.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import AccessDenied
from ..storage_utils import atomic_path
from .common import Caller, state_of

logger = logging.getLogger(__name__)

UPLOAD_DIR = "uploads"
MAX_FILES = 20
MAX_NAME_CHARS = 150
_UNSAFE_RE = re.compile(r"[^\w.\- ()\[\]+@]", re.UNICODE)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_MULTIPART_SLACK = 64 * 1024


def safe_filename(raw: str | None) -> str:
    """A safe base name for an uploaded file, or ValueError with the reason.

    Rejects empty names, absolute paths, drive letters and any directory part (``a/b``, ``..``);
    keeps letters of every script (CJK names stay readable), digits and ``.-_ ()[]+@``; replaces
    other characters with ``_``; strips leading dots (no hidden files); caps the length.
    """
    name = unicodedata.normalize("NFC", (raw or "").strip())
    if not name:
        raise ValueError("file name is empty")
    if "\x00" in name:
        raise ValueError("file name contains a NUL byte")
    if name.startswith(("/", "\\")) or _DRIVE_RE.match(name):
        raise ValueError(f"absolute paths are not allowed: {raw!r}")
    if "/" in name or "\\" in name:
        raise ValueError(f"file name must not contain a directory: {raw!r}")
    if name in (".", ".."):
        raise ValueError(f"invalid file name: {raw!r}")
    name = _UNSAFE_RE.sub("_", name).lstrip(". ")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    if len(name) > MAX_NAME_CHARS:
        keep = MAX_NAME_CHARS - len(suffix) - 1
        name = f"{stem[:keep]}.{suffix}" if suffix and keep > 0 else name[:MAX_NAME_CHARS]
    if not name or not stem:
        raise ValueError(f"invalid file name: {raw!r}")
    return name


def _parse_groups(value: Any) -> list[str] | None:
    if value is None or not str(value).strip():
        return None
    return [g.strip() for g in str(value).split(",") if g.strip()]


async def _save(upload: UploadFile, target: Path, limit: int) -> int:
    """Copy an upload to ``target`` atomically; HTTP 413 beyond ``limit`` bytes."""
    size = 0
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        while True:
            block = await upload.read(1 << 20)
            if not block:
                break
            size += len(block)
            if size > limit:
                raise HTTPException(413, f"{target.name}: file exceeds the upload limit of {limit} bytes")
            fh.write(block)
    return size


def _readable(doc: dict[str, Any], groups: list[str] | None) -> bool:
    if groups is None or not doc.get("groups"):
        return True
    return bool(set(doc["groups"]) & set(groups))


def _doc_json(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: doc.get(k) for k in ("doc_id", "path", "file_type", "status", "n_chunks", "size", "groups",
                                   "tags", "mtime", "ingested_at")}
    out["file"] = os.path.basename(str(doc.get("path", "")))
    return out


def add_document_routes(app: FastAPI) -> None:
    @app.get("/v1/documents")
    async def list_documents(request: Request,
                             caller: Caller) -> dict[str, Any]:
        docs = await run_in_threadpool(state_of(request).kb.documents)
        return {"documents": [_doc_json(d) for d in docs if _readable(d, caller)]}

    @app.delete("/v1/documents/{doc_id}")
    async def delete_document(doc_id: str, request: Request,
                              caller: Caller) -> dict[str, Any]:
        kb = state_of(request).kb
        docs = await run_in_threadpool(kb.documents)
        doc = next((d for d in docs if d.get("doc_id") == doc_id), None)
        if doc is None or not _readable(doc, caller):  # unreadable looks like absent: no existence leak
            raise HTTPException(404, f"no document with id {doc_id!r}")
        removed = await run_in_threadpool(kb.delete, doc_id)
        uploads = (Path(kb.path) / UPLOAD_DIR).resolve()
        path = Path(str(doc.get("path", ""))).resolve()
        if path.parent == uploads and path.is_file():
            path.unlink()  # an uploaded copy goes with its document
        return {"deleted": doc_id, "path": doc.get("path"), "chunks_removed": removed}

    @app.post("/v1/documents", status_code=201)
    async def upload_documents(request: Request,
                               caller: Caller) -> dict[str, Any]:
        st = state_of(request)
        limit = st.max_upload_bytes
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit * MAX_FILES + _MULTIPART_SLACK:
            raise HTTPException(413, f"request exceeds the upload limit of {limit} bytes per file")
        form = await request.form(max_files=MAX_FILES, max_fields=20)
        try:
            files = [f for f in form.getlist("files") + form.getlist("file") if isinstance(f, UploadFile)]
            if not files:
                raise HTTPException(400, "no file: send multipart/form-data with one or more 'files' parts")
            groups = _parse_groups(form.get("groups"))
            if caller is not None:
                if groups is None:
                    groups = list(caller)
                elif set(groups) - set(caller):
                    raise AccessDenied(f"API key does not grant group(s): "
                                       f"{', '.join(sorted(set(groups) - set(caller)))}")
            names = []
            for f in files:
                try:
                    names.append(safe_filename(f.filename))
                except ValueError as exc:
                    raise HTTPException(400, f"rejected file name: {exc}") from exc
            if len(set(names)) != len(names):
                raise HTTPException(400, "two uploaded files have the same name")
            folder = Path(st.kb.path) / UPLOAD_DIR
            folder.mkdir(parents=True, exist_ok=True)
            root = folder.resolve()
            targets = []
            for f, name in zip(files, names, strict=True):
                target = (folder / name).resolve()
                if target.parent != root:  # defence in depth: never outside uploads/
                    raise HTTPException(400, f"rejected file name: {f.filename!r}")
                await _save(f, target, limit)
                targets.append(target)
        finally:
            await form.close()
        report = await run_in_threadpool(st.kb.ingest, [str(t) for t in targets], groups=groups,
                                         show_progress=False)
        failed = {os.path.basename(item.path) for item in report.failed}
        for target in targets:  # a file that could not be ingested is not kept
            if target.name in failed:
                with contextlib.suppress(OSError):
                    target.unlink()
        result = {"report": report.to_dict(), "stored": [t.name for t in targets if t.name not in failed],
                  "groups": groups or []}
        if failed and len(failed) == len(targets):
            reasons = "; ".join(f"{os.path.basename(i.path)}: {i.reason}" for i in report.failed)
            raise HTTPException(422, f"nothing could be ingested: {reasons}")
        return result
