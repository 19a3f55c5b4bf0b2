"""Sandboxed rendering of prompt specs.

There is no template engine here on purpose: a placeholder is a name, replaced
in one pass. Nothing is evaluated, so there is no attribute access and no code
execution, and a value is never parsed again, so template syntax inside a
value stays literal text.

Untrusted values (user questions, retrieved documents, earlier turns of a
conversation) are inserted only as data, inside a delimited block that the value
cannot close:

    <untrusted name="question">
    ...the value, with any <untrusted> or </untrusted> tag defused...
    </untrusted>

A tag is found as a reader (or a model) would see it: after NFKC (full-width U+FF1C is
`<`), with format characters removed (zero-width spaces, soft hyphens, joiners), and
with angle-bracket look-alikes (U+2039, U+3008, U+27E8) and slash look-alikes (U+2044,
U+2215). The `<` of each such tag becomes `&lt;` in the value as it was sent; the rest
of the value is left exactly as it was.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import unicodedata
from collections.abc import Mapping
from typing import Any

from llmops.errors import RenderError
from llmops.prompts.spec import PLACEHOLDER, PromptSpec

# Any tag-like `<untrusted` or `</untrusted`, in the text as seen (see the module doc).
_TAG = re.compile(r"[<\u2039\u3008\u27e8]\s*[/\u2044\u2215]?\s*untrusted", re.IGNORECASE)
MAX_VALUE_CHARS = 200_000


@functools.cache
def _format_chars() -> re.Pattern[str]:
    """Every format character (category Cf: zero-width space, soft hyphen, joiners...)."""
    return re.compile("[" + "".join(re.escape(chr(c)) for c in range(sys.maxunicode + 1)
                                    if unicodedata.category(chr(c)) == "Cf") + "]")


def _text(prompt: str, name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RenderError(
            f"prompt {prompt}: variable {name!r} must be text, got {type(value).__name__}"
        )
    text = str(value)
    if len(text) > MAX_VALUE_CHARS:
        raise RenderError(
            f"prompt {prompt}: variable {name!r} is {len(text)} characters; "
            f"at most {MAX_VALUE_CHARS}"
        )
    return text


def defuse(value: str) -> str:
    """`value` with the `<` of every untrusted tag in it, as seen, written `&lt;`."""
    if value.isascii():  # the common case: no look-alikes can hide in it
        return _TAG.sub(lambda m: "&lt;" + m.group()[1:], value)
    if not _TAG.search(_format_chars().sub("", unicodedata.normalize("NFKC", value))):
        return value
    seen: list[str] = []
    origin: list[int] = []  # the index in `value` of each character of `seen`
    for i, ch in enumerate(value):
        if unicodedata.category(ch) == "Cf":
            continue
        for c in unicodedata.normalize("NFKC", ch):
            seen.append(c)
            origin.append(i)
    opens = {origin[m.start()] for m in _TAG.finditer("".join(seen))}
    return "".join("&lt;" if i in opens else ch for i, ch in enumerate(value))


def delimit(name: str, value: str) -> str:
    """Wrap an untrusted value as data; tags inside it are defused."""
    return f'<untrusted name="{name}">\n{defuse(value)}\n</untrusted>'


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def resolve_values(spec: PromptSpec, values: Mapping[str, Any]) -> dict[str, str]:
    """Check values against the declared variables; return the text of each."""
    unknown = sorted(set(values) - set(spec.variables))
    if unknown:
        declared = ", ".join(sorted(spec.variables)) or "none"
        raise RenderError(
            f"prompt {spec.name}: unknown variable(s) {', '.join(unknown)}; declared: {declared}"
        )
    out: dict[str, str] = {}
    for name, decl in spec.variables.items():
        value = values.get(name)
        if _missing(value):
            if decl.required:
                raise RenderError(f"prompt {spec.name}: required variable {name!r} is missing")
            value = decl.default or ""
        text = _text(spec.name, name, value)
        out[name] = delimit(name, text) if decl.untrusted else text
    return out


def render_messages(spec: PromptSpec, values: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages of `spec` with `values` filled in."""
    texts = resolve_values(spec, values)
    return [
        {"role": m.role, "content": PLACEHOLDER.sub(lambda g: texts[g.group(1)], m.content)}
        for m in spec.messages
    ]


def as_text(messages: list[dict[str, str]]) -> str:
    """A readable single-string form of chat messages (for tables and diffs)."""
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
