"""LlamaIndex adapter: use a knowledge base as a ``llama_index.core`` retriever.

    from kb_assistant.integrations.llama_index import as_llama_index_retriever
    retriever = as_llama_index_retriever(kb, k=5, groups=["hr"])
    nodes = retriever.retrieve("how do I set up the VPN?")      # list[NodeWithScore]

Each node is a ``TextNode`` whose id is the chunk id and whose metadata holds ``source``, ``page``,
``chunk_id`` and the retrieval evidence; ``NodeWithScore.score`` is the calibrated relevance in [0, 1].
Access control and filters are those of :meth:`KnowledgeBase.search`. LlamaIndex's global ``Settings``
are never read or changed (a callback manager of our own is passed in).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def as_llama_index_retriever(kb: Any, k: int = 5, groups: Sequence[str] | None = None,
                             filters: dict[str, Any] | None = None) -> Any:
    """A ``llama_index.core.base.base_retriever.BaseRetriever`` over ``kb`` (needs llama-index-core)."""
    try:
        from llama_index.core.base.base_retriever import BaseRetriever
        from llama_index.core.callbacks import CallbackManager
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    except ImportError as exc:  # pragma: no cover - optional dependency
        raise ImportError("as_llama_index_retriever needs llama-index-core: "
                          "pip install 'kb-assistant[llamaindex]'") from exc

    class KBRetriever(BaseRetriever):
        """LlamaIndex retriever backed by kb-assistant's hybrid search."""

        def __init__(self) -> None:
            super().__init__(callback_manager=CallbackManager([]))
            self.kb, self.k = kb, k
            self.groups = list(groups) if groups is not None else None
            self.filters = dict(filters) if filters else None

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            hits = self.kb.search(query_bundle.query_str, k=self.k, groups=self.groups, filters=self.filters)
            out = []
            for hit in hits:
                meta = {key: value for key, value in hit.metadata.items()
                        if isinstance(value, (str, int, float, bool)) or value is None}
                meta.update(source=hit.source, page=hit.page, chunk_id=hit.chunk_id)
                node = TextNode(id_=hit.chunk_id, text=hit.text, metadata=meta,
                                excluded_embed_metadata_keys=list(meta), excluded_llm_metadata_keys=
                                [key for key in meta if key not in ("source", "page")])
                out.append(NodeWithScore(node=node, score=hit.score))
            return out

    return KBRetriever()
