"""REST server (extra ``server``): the native API, the OpenAI-compatible API and the web chat page.

``app`` builds the FastAPI application and runs it; ``common`` holds what the routes share (callers,
groups, payloads); ``gate`` the bounded generation queue; ``uploads`` the document routes;
``openai_api`` the ``/v1/chat/completions`` and ``/v1/models`` routes; ``static/`` the web page.
"""

from __future__ import annotations

from .app import check_bind, create_app, running_server, serve, state_of_app

__all__ = ["check_bind", "create_app", "running_server", "serve", "state_of_app"]
