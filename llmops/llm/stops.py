"""Stop sequences: where an answer ends, and how much of a growing text is safe to send.

OpenAI's rule, kept by every backend: the answer ends before the first occurrence of
any stop sequence, the stop text itself is not in it, and `finish_reason` is `stop`.
A stream never sends a character past that point, even when a stop sequence spans
two pieces: the tail of the text that could still begin a stop waits for what follows.

Example:
    >>> s = StopScanner(["Observation:"])
    >>> s.feed("Thought: look it up\\nObserv"), s.feed("ation: 42")
    ('Thought: look it up\\n', '')
    >>> s.hit
    True
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_STOPS = 4  # as OpenAI's API


def normalize(stop: str | Sequence[str] | None) -> tuple[str, ...]:
    """The stop sequences of a request's `stop` (a string or a list); ValueError if bad."""
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    if len(items) > MAX_STOPS:
        raise ValueError(f"at most {MAX_STOPS} stop sequences, not {len(items)}")
    for s in items:
        if not isinstance(s, str) or not s:
            raise ValueError(f"a stop sequence must be a non-empty string, not {s!r}")
    return tuple(dict.fromkeys(items))


def cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(`text` up to the first stop sequence, whether one was found)."""
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return (text[:min(found)], True) if found else (text, False)


def safe_end(text: str, stops: Sequence[str]) -> tuple[int, bool]:
    """(how much of `text` may be sent now, whether a stop sequence was found): up to the
    first stop, or else all but the longest tail that begins some stop sequence."""
    head, hit = cut(text, stops)
    if hit:
        return len(head), True
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), hold, -1):
            if text.endswith(s[:k]):
                hold = k
                break
    return len(text) - hold, False


class StopScanner:
    """Feeds on a stream's pieces; gives back the text that is safe to send."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.text = ""  # everything fed so far
        self.sent = 0  # characters of it handed back
        self.hit = False

    def feed(self, piece: str) -> str:
        if self.hit:
            return ""
        self.text += piece
        end, self.hit = safe_end(self.text, self.stops)
        out, self.sent = self.text[self.sent:end], max(self.sent, end)
        return out

    def rest(self) -> str:
        """At the end of the stream (no stop found): the tail held back."""
        if self.hit:
            return ""
        out, self.sent = self.text[self.sent:], len(self.text)
        return out

    @property
    def answer(self) -> str:
        """The whole answer so far: up to the stop, or everything fed."""
        return cut(self.text, self.stops)[0]
