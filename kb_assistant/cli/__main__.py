"""`python -m kb_assistant.cli` is the `kb` command."""

import sys

from kb_assistant.cli import main

sys.exit(main())
