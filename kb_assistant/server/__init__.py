"""REST server (extra ``server``): the native API, the OpenAI-compatible API and the web chat page.

``app`` builds the FastAPI application and runs it; ``state`` what the routes share (the knowledge base,
keys, limits, queue); ``common`` callers, groups, payloads, client paths and errors; ``guard`` what every
request passes first (Host/Origin checks without keys, rate limit, body size, following the knowledge
base); ``limits`` the field, conversation and token limits; ``gate`` the bounded generation queue and
request deadlines; ``uploads`` the document routes (owned uploads); ``openai_api`` the
``/v1/chat/completions`` and ``/v1/models`` routes; ``static/`` the web page.
"""

from __future__ import annotations

from .app import check_bind, create_app, running_server, serve, state_of_app

__all__ = ["check_bind", "create_app", "running_server", "serve", "state_of_app"]
