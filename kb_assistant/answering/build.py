"""Assembling a :class:`QueryEngine` from a knowledge base's config: the gate, safety filter, audit log,
adapter and generator factory. ``KnowledgeBase`` calls :func:`build_engine` with its parts."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import KBConfig
    from ..store.sparse import SparseIndex
    from .engine import QueryEngine

logger = logging.getLogger(__name__)


def adapter_for(kb_path: Path, cfg: KBConfig, explicit: str | os.PathLike[str] | None = None,
                ) -> str | os.PathLike[str] | None:
    """``explicit`` (the constructor's adapter), else ``[generation] adapter`` (relative to the knowledge
    base folder; a missing folder is reported and the base generator used)."""
    if explicit is not None or not cfg.generation.adapter:
        return explicit
    path = kb_path / cfg.generation.adapter
    if not path.is_dir():
        logger.warning("%s: [generation] adapter = %r: no such folder; answering with the base generator "
                       "(run `kb tune` again or unset it)", kb_path, cfg.generation.adapter)
        return None
    return path


def generator_factory(cfg: KBConfig, adapter: str | os.PathLike[str] | None) -> Callable[[], Any]:
    """A function creating the ``[generation]`` generator on first use: the
    :class:`~kb_assistant.remote_generation.RemoteGenerator` of ``remote_url`` when set (the adapter
    and the local-model settings do not apply then), else the local one (torch or llama.cpp, with
    ``adapter``)."""
    g = cfg.generation
    if g.remote_url:
        from ..remote_generation import RemoteGenerator

        if adapter is not None:
            logger.warning("[generation] remote_url is set: the adapter %s is not used", adapter)
        return lambda: RemoteGenerator(g.remote_url, g.remote_model, api_key_env=g.remote_api_key_env,
                                       timeout_s=g.remote_timeout_s)
    from ..models.factory import make_generator

    gen_kw = g.generator_kwargs()
    return lambda: make_generator(adapter=adapter, **gen_kw)


def build_engine(cfg: KBConfig, *, kb_path: Path, search: Callable[..., Any], version_fn: Callable[[], int],
                 sparse: SparseIndex, adapter: str | os.PathLike[str] | None = None,
                 embedder: Callable[[], Any] | None = None) -> QueryEngine:
    """The QueryEngine for the ``[query]``, ``[generation]``, ``[gate]`` and ``[safety]`` sections of
    ``cfg`` over ``search`` (the knowledge base's ACL-aware search); ``embedder()`` (the knowledge
    base's embedder) scores evidence sentences when ``[query] evidence_dense_weight`` > 0."""
    from ..evidence import embedding_scorer
    from ..gate import Gate
    from ..safety import AuditLog, SafetyFilter
    from .engine import QueryEngine

    gate = None
    if cfg.gate.mode != "threshold" and cfg.gate.fitted:
        gate = Gate.from_config(cfg.gate.fitted, sparse)
    if gate is None and cfg.gate.mode == "fitted":
        logger.warning("%s: [gate] mode = 'fitted' but no gate is fitted (run `kb tune` or "
                       "kb.calibrate_gate()): using the score threshold", kb_path)
    safety = SafetyFilter(cfg.safety) if cfg.safety.enabled else None
    audit = None
    if cfg.query.audit_log:
        path = Path(cfg.query.audit_log)
        audit = AuditLog(path if path.is_absolute() else kb_path / path, redact_pii=cfg.safety.redact_audit)
    return QueryEngine(search, generator_factory(cfg, adapter), cfg.query,
                       generation=cfg.generation.decoding(), safety=safety, audit=audit,
                       version_fn=version_fn, gate=gate,
                       sentence_scorer=embedding_scorer(embedder) if embedder is not None else None)
