"""`python -m llmops`: the command line (as the `llmops` script)."""

from llmops.cli import main

main()
