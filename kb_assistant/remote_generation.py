"""A generator that calls an OpenAI-compatible server (vLLM, llama.cpp server, TGI, another kb serve).

Same interface as :class:`kb_assistant.generation.Generator`: ``generate``, ``stream`` (server-sent
events), ``count_tokens`` (an estimate: the remote tokenizer is not here) and ``render``. The server
does its own batching, so concurrent calls simply go out concurrently. Every failure (connection
refused, timeout, a non-2xx status, a malformed reply) is a one-line
:class:`~kb_assistant.errors.GeneratorUnavailable`; the query engine then answers extractively.
Only the standard library is used (``urllib``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from .config import GenerationConfig
from .errors import ConfigError, GeneratorUnavailable

logger = logging.getLogger(__name__)


def approx_tokens(text: str) -> int:
    """About 4 characters a token for Latin text, 1 per CJK character (an upper-side estimate)."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return cjk + math.ceil((len(text) - cjk) / 3.5)


class RemoteGenerator:
    """Chat completions from ``url`` (the base URL, ending in ``/v1``) with ``model``; the API key is
    read from the environment variable named ``api_key_env`` at each call (never stored in config)."""

    #: the server batches concurrent requests itself: the kb server lets ``batch_max`` through at once
    concurrent = True

    def __init__(self, url: str, model: str | None = None, *, api_key_env: str | None = None,
                 timeout_s: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"remote_url must start with http:// or https://; got {url!r}")
        if timeout_s <= 0:
            raise ConfigError(f"remote_timeout_s must be > 0; got {timeout_s}")
        self.url = url.rstrip("/")
        self.model, self.api_key_env, self.timeout_s = model, api_key_env, timeout_s

    def __repr__(self) -> str:
        return f"RemoteGenerator({self.url!r}, model={self.model!r})"

    def warm_up(self) -> RemoteGenerator:
        """Nothing to load; resolves the model name (the server's first model) when unset."""
        if self.model is None:
            data = json.loads(self._request("GET", "/models").read())
            try:
                self.model = data["data"][0]["id"]
            except (KeyError, IndexError, TypeError):
                raise GeneratorUnavailable(f"remote generator {self.url}: /models lists no model; set "
                                           "[generation] remote_model") from None
        return self

    # -- the interface of Generator
    def count_tokens(self, text: str) -> int:
        return approx_tokens(text)

    def render(self, messages: list[dict[str, str]]) -> str:
        """The messages as plain text (the server applies its own chat template)."""
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def generate(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> str:
        from .text import truncate_sentences

        config = config or GenerationConfig()
        resp = self._request("POST", "/chat/completions", self._body(messages, config, stream=False))
        try:
            text = json.loads(resp.read())["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise self._error(f"malformed reply ({type(exc).__name__})") from None
        except OSError as exc:  # TimeoutError included
            raise self._error(self._why(exc)) from None
        return truncate_sentences(text, config.max_sentences)

    def stream(self, messages: list[dict[str, str]], config: GenerationConfig | None = None) -> Iterator[str]:
        """Text pieces from the server's event stream; closing the iterator closes the connection."""
        config = config or GenerationConfig()
        resp = self._request("POST", "/chat/completions", self._body(messages, config, stream=True))
        try:
            for raw in resp:
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    event = json.loads(data)
                except ValueError:
                    raise self._error("malformed event in the stream") from None
                if "error" in event:
                    message = event["error"].get("message", "") if isinstance(event["error"], dict) else ""
                    raise self._error(f"error in the stream: {str(message)[:200]}")
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield piece
        except OSError as exc:  # TimeoutError included
            raise self._error(self._why(exc)) from None
        finally:
            resp.close()

    # -- HTTP
    def _body(self, messages: list[dict[str, str]], config: GenerationConfig, stream: bool) -> dict[str, Any]:
        if self.model is None:
            self.warm_up()
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream,
                                "max_tokens": config.max_new_tokens, "temperature": config.temperature}
        if config.do_sample:
            body["top_p"] = config.top_p
        if config.seed is not None:
            body["seed"] = config.seed
        return body

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Accept": "text/event-stream" if body and body.get("stream") else "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise GeneratorUnavailable(f"remote generator {self.url}: the environment variable "
                                           f"{self.api_key_env} ([generation] remote_api_key_env) is not set")
            headers["Authorization"] = f"Bearer {key}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout_s)  # noqa: S310 - http(s) checked above
        except urllib.error.HTTPError as exc:
            detail = ""
            try:
                detail = exc.read(300).decode("utf-8", "replace").replace("\n", " ")
            except OSError:
                pass
            why = f"HTTP {exc.code} from {path}" + (f": {detail[:200]}" if detail else "")
            raise self._error(why) from None
        except OSError as exc:  # TimeoutError included
            raise self._error(self._why(exc)) from None

    def _why(self, exc: BaseException) -> str:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return f"no reply within {self.timeout_s:g} s ([generation] remote_timeout_s)"
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused (is the server running?)"
        return f"{type(reason).__name__}: {reason}"

    def _error(self, why: str) -> GeneratorUnavailable:
        return GeneratorUnavailable(f"remote generator {self.url} ({self.model or 'no model'}): {why}")
