"""JSON Lines, read one object a line with errors that name the file and the line.

Datasets, index sources and fine-tuning data are all JSONL; each checks its own
fields, and this module the lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops.errors import LlmopsError


def objects(path: Path, error: type[LlmopsError], *, prefix: str = "",
            what: str = "a JSON object") -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(where, line number, object) for each non-blank line; `where` is `[prefix: ]path:line`.

    Raises `error` for a file it cannot read, a line that is not JSON, or one that is not
    an object (`what` says what was expected).
    """
    lead = f"{prefix}: " if prefix else ""
    try:
        fh = path.open(encoding="utf-8")
    except OSError as exc:
        raise error(f"{lead}{path}: cannot read it: {exc}") from None
    with fh:
        try:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{lead}{path}:{lineno}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise error(f"{where}: not valid JSON: {exc.msg}") from None
                if not isinstance(data, dict):
                    raise error(f"{where}: expected {what}")
                yield where, lineno, data
        except UnicodeDecodeError as exc:
            raise error(f"{lead}{path}: not UTF-8 text: {exc}") from None
