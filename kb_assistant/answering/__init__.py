"""The answer stage: question -> retrieve -> gate -> evidence -> generate -> check -> cite.

``engine`` holds :class:`QueryEngine` and :class:`Answer`, ``streaming`` the streamed variant,
``chat`` conversations with follow-up rewriting. The prompt itself is :mod:`kb_assistant.prompts`.
"""

from __future__ import annotations

from .chat import ChatSession, is_followup, rewrite_followup
from .engine import Answer, QueryEngine
from .streaming import StreamingAnswer

__all__ = ["Answer", "ChatSession", "QueryEngine", "StreamingAnswer", "is_followup", "rewrite_followup"]
