"""Logits processors that penalize tokens already seen, per row of a left-padded batch."""

from __future__ import annotations

from typing import Any


class RowRepetitionPenalty:
    """transformers' repetition penalty over each row's own tokens, left padding excluded.

    The penalty scales the scores of every token already in the sequence; a
    row's padding would add the pad token (often end-of-sequence) to its set
    and change its answer. Each pad position takes the row's first real token
    instead, which is in the set anyway.
    """

    def __init__(self, penalty: float, pads: list[int]) -> None:
        self.penalty, self.pads = penalty, pads

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        ids = input_ids
        if any(self.pads):
            ids = input_ids.clone()
            for row, pad in enumerate(self.pads):
                if pad:
                    ids[row, :pad] = input_ids[row, pad]
        score = torch.gather(scores, 1, ids)
        score = torch.where(score < 0, score * self.penalty, score / self.penalty)
        return scores.scatter(1, ids, score)


class AnswerPenalties:
    """OpenAI's presence and frequency penalties: each token already in a row's answer
    (the prompt not counted) loses `presence` from its logit, and `frequency` times the
    number of times it appeared."""

    def __init__(self, presence: float, frequency: float, width: int) -> None:
        self.presence, self.frequency, self.width = presence, frequency, width

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        answer = input_ids[:, self.width:]
        if answer.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, answer, torch.ones_like(answer, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)
