"""LoRA adapters on disk: PEFT's safetensors files plus a ``kb_adapter.json`` manifest.

The manifest records the base model (folder, name and a hash of its ``config.json``), the training
data hash, the training parameters, metrics and library versions. :func:`check_compatible` refuses an
adapter made for another base model with a clear :class:`~kb_assistant.errors.KBError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import KBError
from ..storage_utils import atomic_dir, atomic_write_text

logger = logging.getLogger(__name__)

MANIFEST = "kb_adapter.json"
FORMAT_VERSION = 1


def config_hash(model_path: str | os.PathLike[str]) -> str:
    """sha256 of the base model's ``config.json`` (canonical JSON, volatile keys dropped)."""
    path = Path(model_path) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KBError(f"cannot read the model config {path}: {exc}") from None
    for key in ("transformers_version", "_name_or_path", "_model_name_or_path", "dtype", "torch_dtype",
                "use_cache"):
        data.pop(key, None)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _versions() -> dict[str, str]:
    out = {"kb_assistant": __version__}
    for name in ("torch", "transformers", "peft"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:  # pragma: no cover - metadata missing
            out[name] = "unknown"
    return out


def save_adapter(model: Any, tokenizer: Any, out: str | os.PathLike[str],
                 model_path: str | os.PathLike[str], *,
                 data_hash: str, params: dict[str, Any], metrics: dict[str, Any] | None = None,
                 history: list[dict[str, float]] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write the adapter weights + manifest into ``out`` (existing checkpoints there are kept)."""
    from ..generation import base_model_name

    out, model_path = Path(out), Path(model_path)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": "lora",
        "base_model": base_model_name(model_path),
        "base_model_path": str(model_path.resolve()),
        "base_config_hash": config_hash(model_path),
        "data_hash": data_hash,
        "params": params,
        "metrics": metrics or {},
        "history": history or [],
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(extra or {}),
    }

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        cfg_file = tmp / "adapter_config.json"
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        cfg["base_model_name_or_path"] = str(model_path.resolve())
        cfg_file.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")

    weights = out / "adapter"
    atomic_dir(weights, write)
    for name in os.listdir(weights):  # move the finished files next to checkpoints/, each atomically
        os.replace(weights / name, out / name)
    shutil.rmtree(weights, ignore_errors=True)
    return out


def read_manifest(adapter: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(adapter) / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KBError(f"not a kb-assistant adapter (no {MANIFEST}): {adapter}") from None
    except ValueError as exc:
        raise KBError(f"{path}: invalid JSON ({exc})") from None


def update_metrics(adapter: str | os.PathLike[str], metrics: dict[str, Any]) -> None:
    """Merge ``metrics`` into the manifest's ``metrics`` (atomic rewrite)."""
    path = Path(adapter) / MANIFEST
    manifest = read_manifest(adapter)
    manifest.setdefault("metrics", {}).update(metrics)
    atomic_write_text(path, json.dumps(manifest, indent=2, ensure_ascii=False))


def check_compatible(adapter: str | os.PathLike[str], model_path: str | os.PathLike[str]) -> None:
    """Raise KBError unless ``adapter`` was trained on the model at ``model_path``.

    The base config hash in ``kb_adapter.json`` must match (same architecture and sizes), and the
    declared base model must match (``generation.check_adapter_base``).
    """
    from ..generation import base_model_name, check_adapter_base

    a = Path(adapter)
    if not (a / "adapter_model.safetensors").is_file():
        raise KBError(f"not a LoRA adapter folder (no adapter_model.safetensors): {a}")
    if (a / MANIFEST).is_file():
        manifest = read_manifest(a)
        want = manifest.get("base_config_hash")
        if want and want != config_hash(model_path):
            raise KBError(f"adapter {a.name!r} was trained on base model {manifest.get('base_model')!r} "
                          f"(config {want}), not on {base_model_name(model_path)!r} at {model_path} "
                          f"(config {config_hash(model_path)}); use the matching base model or retrain")
    check_adapter_base(a, model_path)


def load_generator(adapter: str | os.PathLike[str], model_path: str | os.PathLike[str] | None = None,
                   **kwargs: Any) -> Any:
    """A :class:`~kb_assistant.generation.Generator` with ``adapter`` (checked against the base model)."""
    from ..generation import Generator, default_generator_path

    model_path = Path(model_path) if model_path else default_generator_path()
    check_compatible(adapter, model_path)
    return Generator(model_path, adapter=adapter, **kwargs)


def merge_adapter(adapter: str | os.PathLike[str], out: str | os.PathLike[str],
                  model_path: str | os.PathLike[str] | None = None) -> Path:
    """Merge ``adapter`` into its base model and save a full model folder (faster to serve, no PEFT)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..generation import MANIFEST as MODEL_MANIFEST
    from ..generation import base_model_name, default_generator_path

    model_path = Path(model_path) if model_path else default_generator_path()
    check_compatible(adapter, model_path)
    manifest = read_manifest(adapter) if (Path(adapter) / MANIFEST).is_file() else {}

    def write(tmp: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(str(model_path))
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        model.save_pretrained(str(tmp), safe_serialization=True)
        AutoTokenizer.from_pretrained(str(model_path)).save_pretrained(str(tmp))
        info = {"base_model": f"{base_model_name(model_path)}+{Path(adapter).name}",
                "merged_from": str(model_path.resolve()), "adapter": str(Path(adapter).resolve()),
                "adapter_data_hash": manifest.get("data_hash"),
                "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        (tmp / MODEL_MANIFEST).write_text(json.dumps(info, indent=2), encoding="utf-8")

    out = Path(out)
    atomic_dir(out, write)
    logger.info("merged %s into %s -> %s", adapter, model_path.name, out)
    return out
