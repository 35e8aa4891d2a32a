"""The knowledge base manifest: round trip, newer formats refused, unreadable files, embedder checks."""

from __future__ import annotations

import json

import pytest

from kb_assistant._version import __version__
from kb_assistant.errors import IndexVersionError
from kb_assistant.store.manifest import (
    FORMAT_VERSION,
    MANIFEST,
    check_embedder,
    read_manifest,
    write_manifest,
)

EMB = {"backend": "st", "name": "tiny-embedder", "dim": 8}


def test_missing_manifest_reads_as_none(tmp_path):
    assert read_manifest(tmp_path) is None


def test_round_trip_keeps_created_and_moves_updated(tmp_path, monkeypatch):
    first = write_manifest(tmp_path, EMB, None)
    assert read_manifest(tmp_path) == first
    assert first["format_version"] == FORMAT_VERSION and first["library_version"] == __version__
    assert first["embedding"] == EMB and first["created"] == first["updated"]
    # a later rewrite keeps the creation time of the previous manifest
    previous = dict(first, created="2020-01-01T00:00:00Z")
    second = write_manifest(tmp_path, {**EMB, "dim": 16}, previous)
    assert second["created"] == "2020-01-01T00:00:00Z"
    assert read_manifest(tmp_path)["embedding"]["dim"] == 16
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST]  # no temp file left beside it


def _write_raw(tmp_path, data) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps(data), encoding="utf-8")


def test_newer_format_is_refused_naming_the_versions(tmp_path):
    _write_raw(tmp_path, {"format_version": FORMAT_VERSION + 1, "library_version": "9.9.9"})
    with pytest.raises(IndexVersionError) as err:
        read_manifest(tmp_path)
    msg = str(err.value)
    assert f"format {FORMAT_VERSION + 1}" in msg and "9.9.9" in msg and __version__ in msg
    assert "upgrade kb-assistant" in msg


def test_older_or_unversioned_format_is_read(tmp_path):
    _write_raw(tmp_path, {"embedding": EMB})  # format 0: before versioning
    assert read_manifest(tmp_path)["embedding"] == EMB
    _write_raw(tmp_path, {"format_version": FORMAT_VERSION})
    assert read_manifest(tmp_path)["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("raw", [b"", b'{"format_version": 1', b"\xff\xfe\x00garbage", b"[1, 2]",
                                 b'{"format_version": "one"}'],
                         ids=["empty", "truncated", "not-utf8", "not-an-object", "bad-version"])
def test_unreadable_manifest_is_a_typed_error(tmp_path, raw):
    (tmp_path / MANIFEST).write_bytes(raw)
    with pytest.raises(IndexVersionError, match="unreadable manifest"):
        read_manifest(tmp_path)


def test_check_embedder_name_and_dim():
    manifest = {"embedding": EMB}
    check_embedder(manifest, "tiny-embedder")
    check_embedder(manifest, "tiny-embedder", 8)
    with pytest.raises(IndexVersionError, match="'tiny-embedder' but 'other-model'"):
        check_embedder(manifest, "other-model", 8)
    with pytest.raises(IndexVersionError, match="index 8, model 16"):
        check_embedder(manifest, "tiny-embedder", 16)


def test_check_embedder_accepts_what_the_manifest_does_not_record():
    check_embedder({}, "any-model", 384)
    check_embedder({"embedding": None}, "any-model", 384)
    check_embedder({"embedding": {"name": "m"}}, "m", 384)  # no dim recorded yet
