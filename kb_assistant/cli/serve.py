"""``kb serve``: run the REST server and web chat page (needs the ``server`` extra)."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from .common import EXIT_OK, count_int, open_kb, port_int, positive_float


def setup(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kb", required=True, help="knowledge base directory")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; others need --api-keys)")
    parser.add_argument("--port", type=port_int, default=8000, help="port (default 8000)")
    parser.add_argument("--api-keys", metavar="FILE",
                        help='JSON file mapping API key -> list of ACL groups, e.g. {"s3cret-key": ["hr"]}')
    parser.add_argument("--max-upload-mb", type=positive_float, default=None,
                        help="upload size limit per file (default: [server] max_upload_mb, 20)")
    parser.add_argument("--queue", type=count_int, default=None, metavar="N",
                        help="answers that may wait for the generator before the server answers 503 "
                             "(default: [server] queue_size, 32)")
    parser.add_argument("--request-timeout", type=positive_float, default=None, metavar="S",
                        help="an answer still waiting or generating after S seconds is stopped "
                             "(default: [server] request_timeout_s, 120)")
    parser.add_argument("--rate-limit", type=positive_float, default=None, metavar="N",
                        help="requests per minute per API key (per client without keys), 0: off "
                             "(default: [server] rate_limit_per_minute, 600)")

    parser.add_argument("--batch-max", type=count_int, default=None, metavar="N",
                        help="answers generated together in one batch, 1: one at a time "
                             "(default: [server] batch_max, 16)")
    parser.add_argument("--batch-wait-ms", type=positive_float, default=None, metavar="MS",
                        help="how long a batch waits for more answers (default: [server] batch_wait_ms, 20)")


def run(args: argparse.Namespace) -> int:
    try:
        from ..server import check_bind, serve
    except ModuleNotFoundError as exc:
        raise ConfigError(f"kb serve needs the server extra ({exc.name} is missing): "
                          f"pip install 'kb-assistant[server]'") from exc
    check_bind(args.host, args.api_keys)  # fail before the knowledge base and models load
    kb = open_kb(args)  # a path that is not a knowledge base: one line, nothing created
    overrides = {"max_upload_mb": args.max_upload_mb, "queue_size": args.queue,
                 "request_timeout_s": args.request_timeout, "rate_limit_per_minute": args.rate_limit,
                 "batch_max": args.batch_max, "batch_wait_ms": args.batch_wait_ms}
    serve(kb, host=args.host, port=args.port, api_keys=args.api_keys,
          log_level="debug" if args.verbose > 1 else "info",
          config={k: v for k, v in overrides.items() if v is not None})
    return EXIT_OK


COMMANDS = [
    ("serve", "run the REST API (OpenAI-compatible) and the web chat page", setup, run),
]
