#!/usr/bin/env python
"""Ingest folders into a knowledge base: the same as `kb ingest`, for people who run scripts.

    python scripts/ingest_folder.py DOCS_DIR [MORE...] --kb my_kb [--include '*.pdf'] [--prune] [--json]
"""

from __future__ import annotations

import sys

from kb_assistant.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
