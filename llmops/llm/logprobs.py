"""Log probabilities of a local model's answers, per row of a batch (OpenAI's `logprobs`).

`Logprobs` is the last logits processor of a batch that has a row asking for
them: at each step it takes the log-softmax of the scores the model chooses
from (after the penalties and the JSON-mode mask, before temperature and
top_p, so a masked token has none), for the rows that asked only. The
batch's streamer tells it which token each row took (`chosen`); it keeps that
token's log probability and the row's `top_logprobs` best alternatives.

Token texts are their bytes: a byte-level BPE token (GPT-2's alphabet, as
SmolLM2's tokenizer) may hold part of a character, so `bytes` is exact and
`token` is those bytes decoded with replacement characters, as OpenAI's API
gives them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from llmops.llm.base import TokenLogprob

FLOOR = -9999.0  # the log probability of a token that could not be chosen (OpenAI's value)

Raw = tuple[int, float, tuple[tuple[int, float], ...]]  # token, logprob, (token, logprob) best


class Logprobs:
    """Keeps each asking row's chosen tokens with their log probabilities (see the module)."""

    def __init__(self, tops: Sequence[int | None]) -> None:
        self.tops = list(tops)  # per row: None (not asked), or how many alternatives
        self.slot = {row: j for j, row in enumerate(r for r, k in enumerate(tops)
                                                    if k is not None)}
        self.k = max((k or 0 for k in tops), default=0)
        self.records: list[list[Raw]] = [[] for _ in tops]
        self._step: Any = None
        self._best: Any = None

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        rows = torch.tensor(list(self.slot), device=scores.device)
        self._step = torch.log_softmax(scores.index_select(0, rows).float(), dim=-1)
        if self.k:
            values, ids = torch.topk(self._step, self.k, dim=-1)
            self._best = (values.tolist(), ids.tolist())
        return scores

    def chosen(self, row: int, token: int) -> None:
        """Row `row` took `token` at this step."""
        k = self.tops[row]
        if k is None or self._step is None:
            return
        j = self.slot[row]
        top: tuple[tuple[int, float], ...] = ()
        if k:
            values, ids = self._best
            top = tuple((int(t), _finite(v)) for t, v in zip(ids[j][:k], values[j][:k],
                                                              strict=True))
        self.records[row].append((int(token), _finite(float(self._step[j, token])), top))


def _finite(value: float) -> float:
    return max(value, FLOOR)


def answer_logprobs(tokenizer: Any, raw: Sequence[Raw], tokens: Sequence[int],
                    text: str, ends: set[int]) -> tuple[TokenLogprob, ...]:
    """The records of the tokens that make `text`: an end-of-sequence token is left out,
    and so are the tokens past a stop sequence (one that begins inside the answer stays)."""
    keep = len(raw)
    while keep and raw[keep - 1][0] in ends:
        keep -= 1
    full = str(tokenizer.decode(list(tokens), skip_special_tokens=True)).strip()
    if full != text:  # cut at a stop: keep the tokens that begin before its end
        for k in range(keep):
            before = str(tokenizer.decode(list(tokens[:k]), skip_special_tokens=True)).strip()
            if len(before) >= len(text):
                keep = k
                break
    ids = sorted({t for t, _, top in raw[:keep] for t in (t, *(i for i, _ in top))})
    pieces = dict(zip(ids, token_bytes(tokenizer, ids), strict=True))

    def record(token: int, logprob: float, top: tuple[TokenLogprob, ...] = ()) -> TokenLogprob:
        b = pieces[token]
        return TokenLogprob(b.decode("utf-8", "replace"), logprob, tuple(b), top)

    return tuple(record(t, lp, tuple(record(i, v) for i, v in top)) for t, lp, top in raw[:keep])


def token_bytes(tokenizer: Any, ids: Sequence[int]) -> list[bytes]:
    """Each token's bytes: through GPT-2's byte alphabet for a byte-level tokenizer, else
    its decoded text."""
    decoder = _byte_decoder()
    out = []
    for token, piece in zip(ids, tokenizer.convert_ids_to_tokens(list(ids)), strict=True):
        if isinstance(piece, str) and piece and all(c in decoder for c in piece):
            out.append(bytes(decoder[c] for c in piece))
        else:
            out.append(str(tokenizer.decode([token])).encode())
    return out


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for the 256 byte values, reversed."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in kept:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars
