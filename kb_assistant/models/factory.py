"""``make_generator``: the generator a ``[generation]`` table asks for, torch or llama.cpp.

``[generation] model = "qwen2.5-0.5b"`` names a registry model (``kb models list``); ``model_path`` a
converted folder or a ``.gguf`` file instead. ``backend = "torch"`` (default: the safetensors folder,
LoRA adapters, fine-tuning) or ``"llama_cpp"`` (the GGUF as it is; faster on CPU; no adapters).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .registry import (  # noqa: F401  (BACKENDS, check_generator_kwargs: re-exported)
    BACKENDS,
    DEFAULT_MODEL,
    LLAMA_CPP_KEYS,
    TORCH_KEYS,
    check_generator_kwargs,
    get_model,
)

FACTORY_KEYS = ("model", "model_path", "backend", *dict.fromkeys(TORCH_KEYS + LLAMA_CPP_KEYS))


def resolve_model_path(model: str | None = None, model_path: str | os.PathLike[str] | None = None,
                       backend: str = "torch") -> Path | None:
    """The file or folder ``backend`` loads: ``model_path`` as given, else registry ``model``'s converted
    folder (torch) or GGUF (llama_cpp); None means the torch default (converted lazily)."""
    if model and model_path:
        raise ConfigError("give model (a registry name) or model_path, not both")
    from .files import converted_path, model_gguf

    if model_path:
        return Path(model_path).expanduser()
    if backend == "llama_cpp":
        return model_gguf(model or DEFAULT_MODEL)
    if model:
        return converted_path(get_model(model))
    return None


def make_generator(*, backend: str = "torch", model: str | None = None,
                   model_path: str | os.PathLike[str] | None = None,
                   adapter: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """A generator for a ``[generation]`` table (``FACTORY_KEYS``) plus an optional LoRA ``adapter``."""
    check_generator_kwargs(backend=backend, model=model, model_path=model_path, adapter=adapter, **kwargs)
    path = resolve_model_path(model, model_path, backend)
    if backend == "llama_cpp":
        from .llamacpp_backend import LlamaCppGenerator

        return LlamaCppGenerator(path, **kwargs)  # type: ignore[arg-type]
    from ..generation import Generator

    return Generator(path, adapter=adapter, **kwargs)
