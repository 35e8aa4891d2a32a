"""REST server: a thin FastAPI layer over :class:`~kb_assistant.KnowledgeBase` (extra ``server``).

    kb serve --kb DIR [--host 127.0.0.1] [--port 8000] [--api-keys keys.json]

Routes: ``POST /v1/search``, ``POST /v1/ask`` (``"stream": true`` -> server-sent events),
``POST/GET /v1/documents``, ``DELETE /v1/documents/{doc_id}``, ``GET /healthz``, the OpenAI-compatible
``POST /v1/chat/completions`` and ``GET /v1/models`` (:mod:`kb_assistant.server.openai_api`) and the web
chat page at ``/``.

Access: with API keys (a JSON file ``{"key": ["group", ...]}``) every ``/v1`` request needs a key and
searches only the documents readable by the key's groups; without keys the server trusts its callers,
refuses to listen on anything but localhost and answers only requests that really come from there
(:mod:`kb_assistant.server.guard`: Host and Origin checks). Every request is bounded
(:mod:`kb_assistant.server.limits`, the ``[server]`` settings): field and conversation lengths, a token
budget, a rate limit per key, a request timeout. The generator runs ``[server] batch_max`` answers at
a time, batched into one forward pass (:mod:`kb_assistant.answering.batching`), others wait in a
bounded line (full -> 503; :mod:`kb_assistant.server.gate`); answers run in worker threads,
so ``/healthz`` and ``/v1/search`` stay responsive while the model generates, and answers that need no
generation (cached, unknown, extractive) never wait behind one. Each ``/v1`` request first follows the
knowledge base (``kb.refresh()``): a ``kb ingest`` by another process is visible at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .._version import __version__
from ..config import ServerConfig
from ..errors import ConfigError, KBError
from .common import (
    LOCAL_HOSTS,
    AnswerPayload,
    Caller,
    effective_groups,
    error_body,
    error_status,
    history_query,
    hit_json,
    load_api_keys,
    state_of,
)
from .gate import Deadline
from .guard import Guard
from .state import ServerState, server_config
from .uploads import add_document_routes, clean_staging, recover_uploads

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


class Message(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class SearchRequest(BaseModel):
    query: str = Field(min_length=1)
    k: int = Field(5, ge=1, le=50)
    groups: list[str] | None = None
    filters: dict[str, Any] | None = None


class AskRequest(BaseModel):
    question: str = Field(min_length=1)
    stream: bool = False
    k: int | None = Field(None, ge=1, le=50)
    groups: list[str] | None = None
    #: earlier turns of a conversation (their user messages make follow-ups standalone)
    history: list[Message] = Field(default_factory=list)
    answer_mode: Literal["auto", "generate", "extractive"] | None = None
    max_new_tokens: int | None = Field(None, ge=1, le=1024)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    use_cache: bool | None = None


def ask_params(st: ServerState, req: AskRequest, groups: list[str] | None) -> dict[str, Any]:
    """Keyword arguments for ``kb.ask``/``kb.ask_stream`` (only the ones the request set), after the
    limits: question, conversation, groups and the token budget."""
    limits = st.limits
    limits.question("question", req.question)
    limits.conversation([m.content for m in req.history])
    limits.items("groups", req.groups)
    params: dict[str, Any] = {"groups": groups}
    for name in ("k", "answer_mode", "max_new_tokens", "temperature", "use_cache"):
        value = getattr(req, name)
        if value is not None:
            params[name] = value
    previous = [m.content for m in req.history if m.role == "user"]
    if previous:
        params["query"] = history_query(req.question, previous)
    limits.tokens(st.kb, params.get("query", req.question))
    return params


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(KBError)
    async def kb_error(request: Request, exc: KBError) -> JSONResponse:
        status = error_status(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        if status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        return JSONResponse(error_body(status, str(exc)), status_code=status, headers=headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}"), status_code=500)


def _install_core_routes(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz(request: Request) -> dict[str, Any]:
        st = state_of(request)
        return {"status": "ok", "version": __version__, "auth": st.api_keys is not None,
                "uptime_s": round(time.time() - st.started, 1), "queue": st.queue.stats(),
                "batching": st.batching(),
                "request_timeout_s": st.config.request_timeout_s, "reloads": st.reloads,
                "rate_limited": st.rate.refused}

    @app.post("/v1/search")
    async def search(req: SearchRequest, request: Request,
                     caller: Caller) -> dict[str, Any]:
        st = state_of(request)
        st.limits.question("query", req.query)
        st.limits.items("groups", req.groups)
        st.limits.filters(req.filters)
        groups = effective_groups(caller, req.groups)
        t0 = time.perf_counter()
        hits = await run_in_threadpool(st.kb.search, req.query, req.k, groups=groups, filters=req.filters)
        return {"query": req.query, "hits": [hit_json(h, paths=st.paths) for h in hits],
                "timings": {"total": round((time.perf_counter() - t0) * 1000.0, 1)}}

    @app.post("/v1/ask", response_model=None)
    async def ask(req: AskRequest, request: Request,
                  caller: Caller) -> dict[str, Any] | StreamingResponse:
        st = state_of(request)
        deadline = st.deadline()
        params = ask_params(st, req, effective_groups(caller, req.groups))
        if req.stream:
            st.queue.check()  # a full queue is a 503 before the event stream starts
            return StreamingResponse(_ask_events(st, req.question, params, deadline),
                                     media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        answer = await st.answerer.ask(req.question, params, deadline)
        return AnswerPayload.of(answer, paths=st.paths).to_dict()


async def _ask_events(st: ServerState, question: str, params: dict[str, Any], deadline: Deadline,
                      ) -> AsyncIterator[str]:
    """SSE: ``queued`` (the generator is busy), ``delta`` {"text"} pieces, then ``done`` (the whole
    answer: text, sources, citations, unknown, mode, timings) or ``error`` {"message", "status"}."""
    if st.queue.running >= st.queue.concurrency:
        yield sse("queued", {"waiting": st.queue.waiting + 1})
    try:
        text = ""
        async for kind, payload in st.answerer.stream(question, params, deadline):
            if kind == "delta":
                text += payload
                yield sse("delta", {"text": payload})
            elif kind == "done":
                result = AnswerPayload.of(getattr(payload, "answer", None), text, st.paths)
                yield sse("done", result.to_dict())
            else:
                raise payload
    except Exception as exc:
        status = error_status(exc)
        if status == 500:
            logger.exception("streamed answer failed")
        message = str(exc) if status != 500 else f"internal error: {type(exc).__name__}"
        yield sse("error", {"message": message, "status": status})


def _install_static(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def create_app(kb_or_path: Any, api_keys: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None = None,
               *, config: ServerConfig | dict[str, Any] | None = None, max_upload_bytes: int | None = None,
               generation_concurrency: int = 1, max_waiting: int | None = None,
               queue_timeout: float | None = None, request_timeout: float | None = None,
               rate_limit_per_minute: float | None = None, bind_hosts: Sequence[str] = (),
               model_name: str = "kb-assistant") -> FastAPI:
    """The FastAPI application over a KnowledgeBase (or the path of one).

    ``api_keys``: a JSON file or a mapping ``{key: [groups]}``; None = no authentication (localhost
    only, enforced by :func:`serve`; Host and Origin checked on every request). The limits are the
    knowledge base's ``[server]`` settings, then ``config``, then the keyword arguments: ``max_waiting``
    (answers that may wait for the generator before the server answers 503; ``queue_size``),
    ``request_timeout`` (``request_timeout_s``), ``rate_limit_per_minute``; ``max_upload_bytes`` sets
    the upload limit in bytes. ``bind_hosts``: the addresses the server listens on (accepted as Host).
    """
    if isinstance(kb_or_path, (str, os.PathLike)):
        from ..knowledge_base import KnowledgeBase

        kb = KnowledgeBase(kb_or_path)
    else:
        kb = kb_or_path
    keys = load_api_keys(api_keys)
    settings = server_config(kb, config, queue_size=max_waiting, request_timeout_s=request_timeout,
                             rate_limit_per_minute=rate_limit_per_minute)
    state = ServerState(kb, keys, settings, model_name=model_name, max_upload_bytes=max_upload_bytes,
                        generation_concurrency=generation_concurrency, queue_timeout=queue_timeout,
                        bind_hosts=bind_hosts)
    recover_uploads(kb)
    clean_staging(kb)
    app = FastAPI(title="kb-assistant", version=__version__,
                  description="Private, local question answering over your files.")
    app.state.kb_server = state
    _install_error_handlers(app)
    _install_core_routes(app)
    add_document_routes(app)
    from .openai_api import add_openai_routes

    add_openai_routes(app)
    _install_static(app)
    app.add_middleware(Guard, state=state)
    return app


def check_bind(host: str, api_keys: Any) -> None:
    """Without API keys the server only listens on localhost."""
    if api_keys is None and host not in LOCAL_HOSTS:
        raise ConfigError(f"refusing to listen on {host!r} without API keys: anyone on the network could "
                          f"read every document. Pass --api-keys FILE (JSON: key -> list of groups) or "
                          f"use --host 127.0.0.1")


def serve(kb_or_path: Any, host: str = "127.0.0.1", port: int = 8000,
          api_keys: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None = None,
          log_level: str = "info", **app_options: Any) -> None:
    """Run the server (blocking) with uvicorn."""
    import uvicorn

    check_bind(host, api_keys)
    app = create_app(kb_or_path, api_keys, bind_hosts=[host], **app_options)
    logger.info("kb-assistant server on http://%s:%d (auth: %s)", host, port,
                "API keys" if api_keys is not None else "none, localhost only")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)


@contextlib.contextmanager
def running_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0,
                   log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread on a free port; yields its base URL.

    For tests, notebooks and benchmarks: ``with running_server(create_app(kb)) as url: ...``.
    """
    import uvicorn

    state = state_of_app(app)
    check_bind(host, state.api_keys)
    state.allowed_hosts.add(host.strip("[]").lower())
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="off",
                                           timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="kb-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise KBError("the server did not start (see the log above)")
        time.sleep(0.02)
    bound = sock.getsockname()[1]
    try:
        yield f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def state_of_app(app: FastAPI) -> ServerState:
    return app.state.kb_server
