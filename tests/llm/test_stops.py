"""Stop sequences: the cut, and the stream's hold-back, for any way a text is split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmops.llm.stops import StopScanner, cut, normalize, safe_end

ALPHABET = "ab.\n "


@given(text=st.text(ALPHABET, max_size=40),
       stops=st.lists(st.text(ALPHABET, min_size=1, max_size=4), min_size=1, max_size=4),
       cuts=st.lists(st.integers(0, 40), max_size=8))
def test_a_stream_gives_exactly_the_cut_text_however_it_is_split(
        text: str, stops: list[str], cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    scan = StopScanner(stops)
    sent = ""
    expected, hit = cut(text, stops)
    for piece in pieces:
        sent += scan.feed(piece)
        assert expected.startswith(sent)  # never a character past the stop
    sent += scan.rest()
    assert (sent, scan.hit) == (expected, hit) and scan.answer == expected


def test_the_first_stop_in_the_text_wins_and_partial_stops_wait() -> None:
    assert cut("one. two\nthree", ["\n", "."]) == ("one", True)
    assert safe_end("Thought: x\nObs", ["Observation:"]) == (len("Thought: x\n"), False)
    assert safe_end("abc", ["zz"]) == (3, False)


def test_stop_values_are_checked_as_openai_does() -> None:
    assert normalize(None) == () and normalize("x") == ("x",)
    assert normalize(["a", "a", "b"]) == ("a", "b")
    with pytest.raises(ValueError, match="at most 4"):
        normalize(["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="non-empty"):
        normalize(["a", ""])
