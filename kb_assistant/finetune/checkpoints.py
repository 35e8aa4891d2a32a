"""Training checkpoints: adapter weights, optimizer and RNG state as safetensors + JSON (never pickle),
each written to a temp folder and moved into place, so an interrupted run leaves only whole checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..storage_utils import atomic_dir


def save_checkpoint(ckpt_dir: Path, model: Any, optimizer: Any, scheduler: Any,
                    state: dict[str, Any]) -> None:
    import torch
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp), safe_serialization=True)
        opt = optimizer.state_dict()
        tensors: dict[str, Any] = {}
        for pid, st in opt["state"].items():
            for key, value in st.items():
                t = value if torch.is_tensor(value) else torch.tensor(value)
                tensors[f"{pid}.{key}"] = t.detach().cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta = {"param_groups": opt["param_groups"], "scheduler": scheduler.state_dict(), **state}
        (tmp / "trainer_state.json").write_text(json.dumps(meta, default=str, indent=1), encoding="utf-8")

    atomic_dir(ckpt_dir, write)


def latest_checkpoint(out: Path) -> Path | None:
    root = out / "checkpoints"
    found = [p for p in root.glob("step-*") if (p / "trainer_state.json").is_file()] if root.is_dir() else []
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_checkpoint(ckpt: Path, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(ckpt / "adapter_model.safetensors")))
    meta = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    tensors = load_file(str(ckpt / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("rng."):
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta


def prune_checkpoints(out: Path, keep: int) -> None:
    found = sorted((p for p in (out / "checkpoints").glob("step-*") if p.is_dir()),
                   key=lambda p: int(p.name.split("-")[1]))
    for old in found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
