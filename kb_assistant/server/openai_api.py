"""OpenAI-compatible routes: ``POST /v1/chat/completions`` (streaming and not) and ``GET /v1/models``.

Existing OpenAI clients and chat UIs work unchanged: point their base URL at ``http://HOST:PORT/v1``
and use an API key of the server (any string when the server has none). The last user message is the
question; earlier user messages make a follow-up standalone (as :class:`ChatSession` does); system
messages are ignored (the knowledge base has its own prompt). The reply's content is the cited answer
followed by a "Sources:" list; the response (and the last stream chunk) also carries ``sources`` (the
numbered passages: file, page, text, score) and ``kb`` (``unknown``, ``mode``, ``timings``).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from .common import (
    AnswerPayload,
    Caller,
    effective_groups,
    error_body,
    error_status,
    history_query,
    state_of,
)
from .gate import Deadline


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # unknown OpenAI fields (user, seed, ...) are accepted
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    n: int = Field(1, ge=1, le=1)
    #: kb-assistant extensions (``extra_body`` in the openai client): narrow the caller's ACL groups;
    #: answer mode ("extractive" never calls the generator)
    groups: list[str] | None = None
    answer_mode: Literal["auto", "generate", "extractive"] | None = None


def _question_and_params(st: Any, req: ChatRequest, groups: list[str] | None) -> tuple[str, dict[str, Any]]:
    """The question and the ``kb.ask`` parameters of a chat request, after the limits: the last message,
    the earlier ones (system messages included) together, the small fields and the token budget."""
    limits = st.limits
    texts = [m.text() for m in req.messages]
    limits.question("the last message", texts[-1])
    limits.conversation(texts[:-1])
    limits.field("model", req.model)
    limits.items("groups", req.groups)
    users = [t for m, t in zip(req.messages, texts, strict=True) if m.role == "user"]
    if not users or not users[-1].strip():
        raise HTTPException(400, "messages must end with a non-empty user message (the question)")
    if req.messages[-1].role != "user":
        raise HTTPException(400, "the last message must have role 'user' (the question)")
    question = users[-1].strip()
    params: dict[str, Any] = {"groups": groups}
    if len(users) > 1:
        params["query"] = history_query(question, users[:-1])
    limits.tokens(st.kb, params.get("query", question))
    if req.answer_mode is not None:
        params["answer_mode"] = req.answer_mode
    if req.temperature is not None:
        params["temperature"] = min(req.temperature, 2.0)
    if req.top_p is not None:
        params["top_p"] = req.top_p
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None:
        params["max_new_tokens"] = min(max_tokens, 1024)
    return question, params


def _usage(question: str, text: str) -> dict[str, int]:
    """Whitespace word counts (an estimate: the answer goes through retrieval, not one prompt)."""
    p, c = len(question.split()), len(text.split())
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _kb_extra(result: AnswerPayload) -> dict[str, Any]:
    return {"sources": result.sources,
            "kb": {"unknown": result.unknown, "mode": result.mode, "citations": result.citations,
                   "timings": result.timings, "cached": result.cached,
                   "supported": result.supported}}


def _chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
           **extra: Any) -> str:
    body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _stream(st: Any, question: str, params: dict[str, Any], model: str, deadline: Deadline,
                  ) -> AsyncIterator[str]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
    yield _chunk(cid, created, model, {"role": "assistant", "content": ""})
    text = ""
    try:
        async for kind, payload in st.answerer.stream(question, params, deadline):
            if kind == "delta":
                text += payload
                yield _chunk(cid, created, model, {"content": payload})
            elif kind == "error":
                raise payload
            else:
                result = AnswerPayload.of(getattr(payload, "answer", None), text, st.paths)
                refs = result.references()
                if refs:
                    yield _chunk(cid, created, model, {"content": refs})
                yield _chunk(cid, created, model, {}, "stop", usage=_usage(question, text + refs),
                             **_kb_extra(result))
    except Exception as exc:
        status = error_status(exc)
        message = str(exc) if status != 500 else f"internal error: {type(exc).__name__}"
        yield f"data: {json.dumps({'error': error_body(status, message)['error']})}\n\n"
    yield "data: [DONE]\n\n"


def add_openai_routes(app: FastAPI) -> None:
    @app.get("/v1/models")
    async def models(request: Request, caller: Caller) -> dict[str, Any]:
        st = state_of(request)
        return {"object": "list", "data": [{"id": st.model_name, "object": "model",
                                            "created": int(st.started), "owned_by": "kb-assistant"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatRequest, request: Request,
                               caller: Caller,
                               ) -> dict[str, Any] | StreamingResponse:
        st = state_of(request)
        deadline = st.deadline()
        question, params = _question_and_params(st, req, effective_groups(caller, req.groups))
        model = req.model or st.model_name
        if req.stream:
            st.queue.check()
            return StreamingResponse(_stream(st, question, params, model, deadline),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        result = AnswerPayload.of(await st.answerer.ask(question, params, deadline), paths=st.paths)
        content = result.text + result.references()
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "finish_reason": "stop"}],
                "usage": _usage(question, content), **_kb_extra(result)}
