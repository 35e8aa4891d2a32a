"""The one device resolver: ``auto`` picks cuda > mps > cpu (and logs the choice); dtypes per device."""

from __future__ import annotations

import logging
from typing import Any

from .errors import ConfigError

logger = logging.getLogger(__name__)


def resolve_device(requested: str = "auto", what: str = "model") -> str:
    """The device to run ``what`` on. ``cuda`` or ``mps`` asked for but absent: ConfigError (one line;
    falling back to the CPU would make a GPU set-up silently many times slower). ``cpu`` imports no torch."""
    if requested == "cpu":
        return requested
    import torch

    if requested != "auto":
        found = (torch.cuda.is_available() if requested.startswith("cuda") else
                 getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
                 if requested == "mps" else True)
        if not found:
            raise ConfigError(f"{what} device {requested!r} is not available on this machine (torch sees no "
                              f"such device): set device = 'auto' or 'cpu'")
        return requested

    if torch.cuda.is_available():
        device = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    logger.info("%s device: %s", what, device)
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """A torch dtype: ``auto`` = bf16 on CUDA (fp16 where bf16 is unsupported), fp32 elsewhere."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in table:
        raise ConfigError(f"dtype must be one of 'auto', {', '.join(map(repr, table))}; got {dtype!r}")
    return table[dtype]
