"""LlamaIndex query engine and LLM over a knowledge base (extra ``llamaindex``).

    from kb_assistant.integrations.llama_index_engine import KBLLM, as_llama_index_query_engine

    engine = as_llama_index_query_engine(kb)                    # kb.ask: unknown gate, citations
    response = engine.query("How do I set up the VPN?")         # .response, .source_nodes, .metadata

    # or LlamaIndex's own synthesis over the kb retriever, with the local generator as the LLM
    engine = as_llama_index_query_engine(kb, synthesizer="llama_index")
    llm = KBLLM.from_kb(kb)                                     # usable anywhere LlamaIndex takes an llm=

LlamaIndex's global ``Settings`` is never read for the LLM nor written: the LLM is always passed
explicitly, so nothing falls back to OpenAI.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

try:
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        ChatResponseGen,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
        MessageRole,
    )
    from llama_index.core.base.response.schema import Response
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
    from llama_index.core.llms.custom import CustomLLM
    from llama_index.core.query_engine import CustomQueryEngine
    from llama_index.core.schema import NodeWithScore, TextNode
except ImportError as exc:  # pragma: no cover - optional dependency
    raise ImportError("the LlamaIndex query engine needs llama-index-core: "
                      "pip install 'kb-assistant[llamaindex]'") from exc
from pydantic import Field, PrivateAttr

from ..config import GenerationConfig
from ..errors import ConfigError
from ..generation import Generator

_ROLES = {MessageRole.SYSTEM: "system", MessageRole.DEVELOPER: "system", MessageRole.USER: "user",
          MessageRole.ASSISTANT: "assistant"}
_GEN_KWARGS = {"max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "seed",
               "max_sentences"}


def hit_to_node(hit: Any) -> NodeWithScore:
    """A kb Hit as a LlamaIndex node (id = chunk id; metadata: source, file, page)."""
    metadata = {"source": hit.source, "file": os.path.basename(hit.source), "page": hit.page}
    node = TextNode(text=hit.text, id_=hit.chunk_id, metadata=metadata,
                    excluded_llm_metadata_keys=["source", "page"],
                    excluded_embed_metadata_keys=["source", "file", "page"])
    return NodeWithScore(node=node, score=float(hit.score))


class KBLLM(CustomLLM):
    """The local kb-assistant generator (default SmolLM2-135M-Instruct) as a LlamaIndex ``CustomLLM``.

    Chat messages go to the model's own chat template; a completion prompt is sent as one user message.
    Extra keyword arguments of ``complete``/``chat`` that are ``GenerationConfig`` fields
    (``max_new_tokens``, ``temperature``, ...) override the defaults for that call.
    """

    model_name: str = Field(default="kb-assistant-generator", description="name reported in metadata")
    context_window: int = Field(default=2048, gt=0, description="prompt + answer tokens the model takes")
    num_output: int = Field(default=256, gt=0, description="max new tokens per call")
    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0 = greedy decoding")
    _generator: Any = PrivateAttr(default=None)

    def __init__(self, generator: Any = None, *, model_path: str | os.PathLike[str] | None = None,
                 **kwargs: Any) -> None:
        kwargs.setdefault("callback_manager", CallbackManager([]))
        super().__init__(**kwargs)
        self._generator = generator if generator is not None else Generator(model_path)

    @classmethod
    def from_kb(cls, kb: Any, **kwargs: Any) -> KBLLM:
        """The generator a knowledge base answers with (its fine-tuned adapter included)."""
        try:
            generator = kb.engine.generator
        except ConfigError:  # an extractive-only engine has no generator: use the default model
            generator = Generator(adapter=getattr(kb, "adapter", None))
        return cls(generator, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "kb_assistant_llm"

    @property
    def generator(self) -> Any:
        return self._generator

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=self.context_window, num_output=self.num_output,
                           is_chat_model=True, model_name=self.model_name)

    def _config(self, kwargs: dict[str, Any]) -> GenerationConfig:
        params: dict[str, Any] = {"max_new_tokens": self.num_output, "temperature": self.temperature}
        params.update({k: v for k, v in kwargs.items() if k in _GEN_KWARGS})
        return GenerationConfig(**params)

    def _messages(self, messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
        out = []
        if self.system_prompt and not any(m.role == MessageRole.SYSTEM for m in messages):
            out.append({"role": "system", "content": self.system_prompt})
        for m in messages:
            out.append({"role": _ROLES.get(m.role, "user"), "content": m.content or ""})
        return out

    def _prompt_messages(self, prompt: str) -> list[dict[str, str]]:
        return self._messages([ChatMessage(role=MessageRole.USER, content=prompt)])

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = self._generator.generate(self._prompt_messages(prompt), self._config(kwargs))
        return CompletionResponse(text=text)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        stream = self._generator.stream(self._prompt_messages(prompt), self._config(kwargs))

        def gen() -> CompletionResponseGen:
            text = ""
            for piece in stream:
                text += piece
                yield CompletionResponse(text=text, delta=piece)

        return gen()

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text = self._generator.generate(self._messages(messages), self._config(kwargs))
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        stream = self._generator.stream(self._messages(messages), self._config(kwargs))

        def gen() -> ChatResponseGen:
            text = ""
            for piece in stream:
                text += piece
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=piece)

        return gen()


class KBQueryEngine(CustomQueryEngine):
    """A LlamaIndex query engine answering with ``kb.ask``: the calibrated unknown gate, grounded
    evidence, the post-check and citations. ``Response.metadata`` holds ``unknown``, ``mode``,
    ``citations`` ({n: chunk_id}) and ``timings``; ``source_nodes`` are the numbered passages."""

    kb: Any
    k: int | None = None
    groups: list[str] | None = None
    ask_params: dict[str, Any] = Field(default_factory=dict)

    def custom_query(self, query_str: str) -> Response:
        params = dict(self.ask_params)
        if self.k is not None:
            params["k"] = self.k
        if self.groups is not None:
            params["groups"] = list(self.groups)
        answer = self.kb.ask(query_str, **params)
        citations = {int(n): h.chunk_id for n, h in (getattr(answer, "citations", None) or {}).items()}
        metadata = {"unknown": answer.unknown, "mode": getattr(answer, "mode", None), "citations": citations,
                    "timings": dict(getattr(answer, "timings", {}) or {})}
        return Response(response=answer.text, source_nodes=[hit_to_node(h) for h in answer.sources],
                        metadata=metadata)


def as_llama_index_query_engine(kb: Any, k: int | None = None, groups: Sequence[str] | None = None, *,
                                synthesizer: str = "kb", llm: Any = None, response_mode: str = "compact",
                                streaming: bool = False, **ask_params: Any) -> Any:
    """A LlamaIndex query engine over ``kb``.

    ``synthesizer="kb"`` (default): :class:`KBQueryEngine` (kb.ask; ``ask_params`` such as
    ``answer_mode`` pass through). ``synthesizer="llama_index"``: a ``RetrieverQueryEngine`` over the
    kb retriever adapter with LlamaIndex's response synthesis (``response_mode``, ``streaming``) and
    ``llm`` (default :meth:`KBLLM.from_kb`) -- no unknown gate, no post-check.
    """
    if synthesizer == "kb":
        if streaming:
            raise ConfigError("streaming needs synthesizer='llama_index' (kb.ask_stream: use the REST "
                              "server or kb.ask_stream directly)")
        return KBQueryEngine(kb=kb, k=k, groups=list(groups) if groups is not None else None,
                             ask_params=ask_params, callback_manager=CallbackManager([]))
    if synthesizer != "llama_index":
        raise ConfigError(f"synthesizer must be one of 'kb', 'llama_index'; got {synthesizer!r}")
    if ask_params:
        raise ConfigError(f"ask parameters {sorted(ask_params)} apply to synthesizer='kb' only")
    from llama_index.core.query_engine import RetrieverQueryEngine

    from .llama_index import as_llama_index_retriever

    retriever = as_llama_index_retriever(kb, k=k or 5, groups=list(groups) if groups is not None else None)
    return RetrieverQueryEngine.from_args(retriever, llm=llm if llm is not None else KBLLM.from_kb(kb),
                                          response_mode=response_mode, streaming=streaming,
                                          callback_manager=CallbackManager([]))
