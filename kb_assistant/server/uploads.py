"""Document routes of the REST server: upload + ingest (size-limited, path-safe, owned), list, delete.

Ownership: an uploaded file is stored under ``<kb>/uploads/<owner>/<name>``, where ``<owner>`` names
the groups that uploaded it (the API key's groups; for a trusted local caller, the groups it gave the
document; ``_public`` for none). Same-name uploads of different groups are different files and
documents; only callers with exactly the owner's groups may replace or delete an upload (403 for
others), and with API keys nobody may delete through the API what was not uploaded through it.

Failed uploads change nothing: files are written to ``uploads/.staging/`` first (a 413 leaves nothing
behind), an existing file is kept as a hard link while its replacement is ingested, and put back when
the replacement fails (422 for an unsupported or corrupt file) — the document keeps its old text.
A server killed while an upload is placed and ingested leaves a journal (``uploads/.staging/
<id>.pending.json``: each target and its kept-aside previous version); at the next start
:func:`recover_uploads` keeps what the knowledge base committed and puts the rest back as it was, so
no file the client was never told about stays behind (to be ingested later without its groups).

A name holding a directory part (``..``, ``/``, ``\\``, a drive letter) is rejected, not silently
rewritten, so a client cannot write outside its folder nor overwrite a file it did not mean to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import time
import unicodedata
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..errors import AccessDenied
from ..storage_utils import atomic_path, atomic_write_text, file_hash
from .common import UPLOAD_DIR, Caller, PathView, state_of
from .limits import FIELD_CHARS, MAX_UPLOAD_FILES, Limits

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"
PUBLIC_OWNER = "_public"
MAX_NAME_CHARS = 150
_UNSAFE_RE = re.compile(r"[^\w.\- ()\[\]+@]", re.UNICODE)
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")


def safe_filename(raw: str | None) -> str:
    """A safe base name for an uploaded file, or ValueError with the reason.

    Rejects empty names, absolute paths, drive letters and any directory part (``a/b``, ``..``);
    keeps letters of every script (CJK names stay readable), digits and ``.-_ ()[]+@``; replaces
    other characters with ``_``; strips leading dots (no hidden files); caps the length.
    """
    name = unicodedata.normalize("NFC", (raw or "").strip())
    if not name:
        raise ValueError("file name is empty")
    if len(name) > 4 * MAX_NAME_CHARS:
        raise ValueError(f"file name has {len(name)} characters; the limit is {4 * MAX_NAME_CHARS} (fixed)")
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


def owner_folder(groups: list[str]) -> str:
    """The folder of uploads owned by ``groups``: ``hr``, ``eng+hr``, ``_public``; group sets whose
    names are not plain (or too many) get ``g-<hash>``. Distinct group sets never share a folder."""
    unique = sorted(set(groups))
    if not unique:
        return PUBLIC_OWNER
    if len(unique) <= 4 and all(_GROUP_RE.match(g) for g in unique):
        return "+".join(unique)
    return "g-" + hashlib.sha256(json.dumps(unique).encode()).hexdigest()[:16]


def uploads_root(kb: Any) -> Path:
    return Path(os.path.realpath(Path(kb.path) / UPLOAD_DIR))


def modify_refusal(doc: dict[str, Any], caller: list[str] | None, root: Path, paths: PathView) -> str | None:
    """Why ``caller`` may not replace or delete ``doc`` (None: it may). A trusted local caller may."""
    if caller is None:
        return None
    path = Path(str(doc.get("path", "")))
    shown = paths.show(path)
    if path.parent.parent != root:
        return (f"{shown} was not uploaded through the API (or before uploads had owners): "
                "only the server's owner can delete it (kb delete)")
    if path.parent.name != owner_folder(caller):
        return f"{shown} belongs to the group(s) that uploaded it; this API key's groups differ"
    return None


def clean_staging(kb: Any, older_than_s: float = 3600.0) -> None:
    """Remove what interrupted uploads left in ``uploads/.staging/`` (at server start; files of the last
    hour are kept: another server process may be using them)."""
    if getattr(kb, "path", None) is None:
        return
    staging = Path(kb.path) / UPLOAD_DIR / STAGING_DIR
    if not staging.is_dir():
        return
    cutoff = time.time() - older_than_s
    keep: set[str] = set()  # the journals :func:`recover_uploads` left (a live process) and their files
    for journal in staging.glob("*.pending.json"):
        keep.add(journal.name)
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            keep.update(Path(b).name for _, b in json.loads(journal.read_text("utf-8"))["placed"] if b)
    old = [p for p in staging.iterdir()
           if p.is_file() and p.name not in keep and p.stat().st_mtime < cutoff]
    if old:
        logger.warning("%s: removing %d file(s) left by interrupted uploads", staging, len(old))
    for path in old:
        path.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by another user
        return True
    return True


def recover_uploads(kb: Any) -> int:
    """Finish what a killed server left half done (see the module docstring); returns the journals
    recovered. A journal of a live process on this machine is left alone (it is still working)."""
    if getattr(kb, "path", None) is None:
        return 0
    staging = Path(kb.path) / UPLOAD_DIR / STAGING_DIR
    journals = sorted(staging.glob("*.pending.json")) if staging.is_dir() else []
    if not journals:
        return 0
    committed = {os.path.realpath(str(d.get("path", ""))): d.get("content_hash") for d in kb.documents()}
    done = 0
    for journal in journals:
        try:
            entry = json.loads(journal.read_text(encoding="utf-8"))
            if entry.get("host") == os.uname().nodename and entry.get("pid") != os.getpid() \
                    and _pid_alive(int(entry.get("pid", -1))):
                continue
            for target_s, backup_s in entry["placed"]:
                target, backup = Path(target_s), Path(backup_s) if backup_s else None
                digest = committed.get(os.path.realpath(target))
                if digest is not None and target.is_file() and file_hash(target) == digest:
                    if backup is not None:
                        backup.unlink(missing_ok=True)  # the upload was committed: keep it
                else:
                    _put_back(target, backup)
                    logger.warning("%s: upload interrupted before its ingest committed: %s", target,
                                   "previous version restored" if backup is not None else "removed")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: unreadable upload journal (%s): left in place", journal, exc)
            continue
        journal.unlink(missing_ok=True)
        done += 1
    return done


def _parse_groups(value: Any) -> list[str] | None:
    if value is None or not str(value).strip():
        return None
    groups = [g.strip() for g in str(value).split(",") if g.strip()]
    Limits.items("groups", groups)
    return groups


async def _stage(upload: UploadFile, staged: Path, limits: Limits, name: str) -> None:
    """Copy an upload to ``staged`` atomically; HTTP 413 beyond the upload limit."""
    size, limit = 0, limits.max_upload_bytes
    with atomic_path(staged) as tmp, open(tmp, "wb") as fh:
        while True:
            block = await upload.read(1 << 20)
            if not block:
                break
            size += len(block)
            if size > limit:
                raise HTTPException(413, str(limits.upload_error(name)))
            fh.write(block)


def _keep_aside(target: Path, staging: Path) -> Path | None:
    """A hard link (or copy) of an existing ``target``, to put back if its replacement fails."""
    if not target.exists():
        return None
    backup = staging / f"{uuid.uuid4().hex}.keep"
    try:
        os.link(target, backup)
    except OSError:
        shutil.copy2(target, backup)
    return backup


def _put_back(target: Path, backup: Path | None) -> None:
    with contextlib.suppress(OSError):
        if backup is not None:
            os.replace(backup, target)  # the previous version, as it was
        else:
            target.unlink()


def place_and_ingest(st: Any, staged: list[tuple[Path, Path]], groups: list[str] | None,
                     staging: Path) -> Any:
    """Move staged files into place and ingest them; files that fail are put back as they were. A
    journal records the placements until the outcome is settled (:func:`recover_uploads`)."""
    placed: list[tuple[Path, Path | None]] = []
    journal = staging / f"{uuid.uuid4().hex}.pending.json"
    backups: list[Path | None] = []
    with st.upload_lock:
        try:
            backups = [_keep_aside(target, staging) for _, target in staged]
            pairs = [[str(t), str(b) if b else None] for (_, t), b in zip(staged, backups, strict=True)]
            atomic_write_text(journal, json.dumps({"pid": os.getpid(), "host": os.uname().nodename,
                                                   "started": time.time(), "placed": pairs}))
            for (source, target), backup in zip(staged, backups, strict=True):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)
                placed.append((target, backup))
            report = st.kb.ingest([str(t) for t, _ in placed], groups=groups, show_progress=False)
        except BaseException:
            for target, backup in placed:
                _put_back(target, backup)
            for backup in backups:  # those of targets not replaced yet (the others were put back)
                if backup is not None:
                    backup.unlink(missing_ok=True)
            journal.unlink(missing_ok=True)
            raise
        failed = {os.path.realpath(i.path) for i in report.failed}
        for target, backup in placed:
            if str(target) in failed:
                _put_back(target, backup)
            elif backup is not None:
                backup.unlink(missing_ok=True)
        journal.unlink(missing_ok=True)
    return report


def _doc_json(doc: dict[str, Any], paths: PathView, refusal: str | None) -> dict[str, Any]:
    out = {k: doc.get(k) for k in ("doc_id", "file_type", "status", "n_chunks", "size", "groups", "tags",
                                   "mtime", "ingested_at")}
    out["path"] = paths.show(doc.get("path"))
    out["file"] = os.path.basename(str(doc.get("path", "")))
    out["uploaded"] = paths.is_upload(str(doc.get("path", "")))
    out["deletable"] = refusal is None
    return out


def _report_json(report: Any, paths: PathView) -> dict[str, Any]:
    data = report.to_dict()
    for key in ("added", "updated", "unchanged", "removed"):
        data[key] = [paths.show(p) for p in data[key]]
    data["failed"] = [{"path": paths.show(f["path"]), "reason": paths.scrub(f["reason"], [f["path"]])}
                      for f in data["failed"]]
    return data


def _readable(doc: dict[str, Any], groups: list[str] | None) -> bool:
    if groups is None or not doc.get("groups"):
        return True
    return bool(set(doc["groups"]) & set(groups))


def add_document_routes(app: FastAPI) -> None:
    @app.get("/v1/documents")
    async def list_documents(request: Request, caller: Caller) -> dict[str, Any]:
        st = state_of(request)
        docs = await run_in_threadpool(st.kb.documents)
        root = uploads_root(st.kb)
        return {"documents": [_doc_json(d, st.paths, modify_refusal(d, caller, root, st.paths))
                              for d in docs if _readable(d, caller)]}

    @app.delete("/v1/documents/{doc_id}")
    async def delete_document(doc_id: str, request: Request, caller: Caller) -> dict[str, Any]:
        st = state_of(request)
        Limits.field("doc_id", doc_id)
        kb = st.kb
        docs = await run_in_threadpool(kb.documents)
        doc = next((d for d in docs if d.get("doc_id") == doc_id), None)
        if doc is None or not _readable(doc, caller):  # unreadable looks like absent: no existence leak
            raise HTTPException(404, f"no document with id {doc_id!r}")
        root = uploads_root(kb)
        refusal = modify_refusal(doc, caller, root, st.paths)
        if refusal is not None:
            raise AccessDenied(refusal)

        def delete() -> int:
            with st.upload_lock:
                removed = kb.delete(doc_id)
                path = Path(str(doc.get("path", "")))
                if path.is_relative_to(root) and path.is_file():
                    path.unlink()  # an uploaded copy goes with its document
                return removed

        removed = await run_in_threadpool(delete)
        return {"deleted": doc_id, "path": st.paths.show(doc.get("path")), "chunks_removed": removed}

    @app.post("/v1/documents", status_code=201)
    async def upload_documents(request: Request, caller: Caller) -> dict[str, Any]:
        st = state_of(request)
        limits: Limits = st.limits
        form = await request.form(max_files=MAX_UPLOAD_FILES, max_fields=20, max_part_size=4 * FIELD_CHARS)
        root = uploads_root(st.kb)
        staging = root / STAGING_DIR
        staged: list[tuple[Path, Path]] = []
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
            owner = owner_folder(list(caller) if caller is not None else groups or [])
            names = []
            for f in files:
                try:
                    names.append(safe_filename(f.filename))
                except ValueError as exc:
                    raise HTTPException(400, f"rejected file name: {exc}") from exc
            if len(set(names)) != len(names):
                raise HTTPException(400, "two uploaded files have the same name")
            folder = root / owner
            for f, name in zip(files, names, strict=True):
                target = folder / name
                if target.parent != folder or not target.is_relative_to(root):  # defence in depth
                    raise HTTPException(400, f"rejected file name: {f.filename!r}")
                source = staging / f"{uuid.uuid4().hex}-{name}"
                await _stage(f, source, limits, name)
                staged.append((source, target))
            report = await run_in_threadpool(place_and_ingest, st, staged, groups, staging)
        finally:
            await form.close()
            for source, _ in staged:
                source.unlink(missing_ok=True)
        failed = {os.path.realpath(i.path) for i in report.failed}
        stored = [t for _, t in staged if str(t) not in failed]
        result = {"report": _report_json(report, st.paths), "stored": [t.name for t in stored],
                  "paths": [st.paths.show(t) for t in stored], "groups": groups or [], "owner": owner}
        if failed and not stored:
            reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in result["report"]["failed"])
            raise HTTPException(422, f"nothing could be ingested: {reasons}")
        return result
