"""Training data on real parts: the SmolLM2 tokenizer's chat template, a tiny Llama built
in code for the attention and loss checks, and a real request log for reviewed answers."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import torch

from llmops.finetune import data as D
from llmops.finetune.recipe import Recipe
from llmops.store import Store
from tests.finetune.conftest import served, vote, write_jsonl

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "finetune" / "data" / "house_style.jsonl"

TWO_TURNS = D.Conversation((
    ("system", "You answer Python questions briefly."),
    ("user", "What is a tuple?"),
    ("assistant", "An immutable sequence.\nTip: Use one for fixed records."),
    ("user", "And a list?"),
    ("assistant", "A mutable sequence.\nTip: Append with `append`."),
), "test")


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) of each run of trained labels."""
    out, start = [], None
    for i, label in enumerate([*labels, D.IGNORE]):
        if label != D.IGNORE and start is None:
            start = i
        elif label == D.IGNORE and start is not None:
            out.append((start, i))
            start = None
    return out


def _conv(question: str, answer: str, source: str = "test") -> D.Conversation:
    return D.Conversation((("user", question), ("assistant", answer)), source)


# -- masking -----------------------------------------------------------------------------
def test_only_the_assistant_turns_and_their_end_tokens_are_labelled(tokenizer: Any) -> None:
    ex = D.tokenize(tokenizer, TWO_TURNS, max_len=512)
    assert ex is not None
    full = tokenizer.apply_chat_template(TWO_TURNS.as_messages(), tokenize=True,
                                         return_dict=False)
    assert ex.input_ids == list(full)
    spans = _spans(ex.labels)
    assert [tokenizer.decode(ex.input_ids[a:b]) for a, b in spans] == [
        "An immutable sequence.\nTip: Use one for fixed records.<|im_end|>",
        "A mutable sequence.\nTip: Append with `append`.<|im_end|>"]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for a, b in spans:  # a label is the token itself; the turn ends on <|im_end|>
        assert ex.labels[a:b] == ex.input_ids[a:b] and ex.input_ids[b - 1] == end
        assert tokenizer.decode(ex.input_ids[:a]).endswith("<|im_start|>assistant\n")
    labelled = {i for a, b in spans for i in range(a, b)}
    assert all(label == D.IGNORE for i, label in enumerate(ex.labels) if i not in labelled)
    assert ex.trained_tokens == len(labelled)


def test_without_a_system_message_the_templates_default_is_context(tokenizer: Any) -> None:
    ex = D.tokenize(tokenizer, _conv("What is a set?", "Unique items."), max_len=512)
    assert ex is not None
    (a, b), = _spans(ex.labels)
    assert tokenizer.decode(ex.input_ids[a:b]) == "Unique items.<|im_end|>"
    assert "You are a helpful AI assistant" in tokenizer.decode(ex.input_ids[:a])


def test_truncation_keeps_what_fits_and_drops_what_has_nothing_to_learn(tokenizer: Any) -> None:
    whole = D.tokenize(tokenizer, TWO_TURNS, max_len=512)
    assert whole is not None
    first_end = _spans(whole.labels)[0][1]
    cut = D.tokenize(tokenizer, TWO_TURNS, max_len=first_end)
    assert cut is not None and len(cut.input_ids) == first_end
    assert len(_spans(cut.labels)) == 1
    assert D.tokenize(tokenizer, TWO_TURNS, max_len=_spans(whole.labels)[0][0]) is None


# -- packing and padding on a tiny Llama -------------------------------------------------
def _examples(tokenizer: Any) -> list[D.Example]:
    convs = [TWO_TURNS, _conv("What does zip do?", "Pairs items up.\nTip: Use strict=True."),
             _conv("What is pathlib?", "Paths as objects.\nTip: Join them with /.")]
    out = [D.tokenize(tokenizer, c, max_len=512) for c in convs]
    assert all(e is not None for e in out) and len({len(e.input_ids) for e in out if e}) > 1
    return [e for e in out if e is not None]


def _alone(model: Any, ex: D.Example) -> tuple[torch.Tensor, float, int]:
    """Logits, mean loss and the number of tokens it averages, for one conversation alone."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ex.input_ids]), labels=torch.tensor([ex.labels]))
    return out.logits[0], float(out.loss), sum(label != D.IGNORE for label in ex.labels[1:])


def test_packed_conversations_never_attend_to_each_other(tokenizer: Any, tiny_model: Any) -> None:
    first, second = _examples(tokenizer)[:2]
    batch = D.pack([first, second])
    n1, n2 = len(first.input_ids), len(second.input_ids)
    assert batch["input_ids"].shape == (1, n1 + n2) and "attention_mask" not in batch
    assert batch["position_ids"][0].tolist() == [*range(n1), *range(n2)]
    with torch.no_grad():
        packed = tiny_model(**batch)
    (l1, loss1, c1), (l2, loss2, c2) = _alone(tiny_model, first), _alone(tiny_model, second)
    torch.testing.assert_close(packed.logits[0, :n1], l1, rtol=0, atol=1e-5)
    torch.testing.assert_close(packed.logits[0, n1:], l2, rtol=0, atol=1e-5)
    assert float(packed.loss) == pytest.approx((loss1 * c1 + loss2 * c2) / (c1 + c2), abs=1e-5)

    # The check has teeth: with plain positions the second conversation sees the first.
    with torch.no_grad():
        plain = tiny_model(input_ids=batch["input_ids"],
                           position_ids=torch.arange(n1 + n2)[None], labels=batch["labels"])
    torch.testing.assert_close(plain.logits[0, :n1], l1, rtol=0, atol=1e-5)
    assert (plain.logits[0, n1:] - l2).abs().max() > 1e-3


def test_padded_rows_give_each_conversation_its_own_loss(tokenizer: Any, tiny_model: Any) -> None:
    examples = _examples(tokenizer)
    pad_id = tokenizer.pad_token_id
    batch = D.pad(examples, pad_id)
    width = max(len(e.input_ids) for e in examples)
    assert batch["input_ids"].shape == (3, width)
    assert batch["attention_mask"].sum(1).tolist() == [len(e.input_ids) for e in examples]
    with torch.no_grad():
        out = tiny_model(**batch)
    per_token = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:], reduction="none")
    counted = batch["labels"][:, 1:] != D.IGNORE
    alone = [_alone(tiny_model, e) for e in examples]
    for row, (ex, (logits, loss, count)) in enumerate(zip(examples, alone, strict=True)):
        assert int(counted[row].sum()) == count
        assert float(per_token[row][counted[row]].mean()) == pytest.approx(loss, abs=1e-5)
        torch.testing.assert_close(out.logits[row, :len(ex.input_ids)], logits,
                                   rtol=0, atol=1e-5)
    total = sum(loss * count for _, loss, count in alone) / sum(c for _, _, c in alone)
    assert float(out.loss) == pytest.approx(total, abs=1e-5)


# -- reviewed answers from the request log -------------------------------------------------
DAY = 86400.0


def _ts(day: str, hour: int = 12) -> float:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc).timestamp()


def _seed(store: Store) -> None:
    """Votes on rag-qa/production unless named otherwise, one a day from 2026-11-02."""
    log = store.log_request
    log(served("up", "What is a dict?", "A mapping.", messages=[
        {"role": "system", "content": "Client says: answer in French."},
        {"role": "user", "content": "What is a dict?"}]))
    log(served("fixed", "What is a set?", "A list."))
    log(served("bare", "What is a tuple?", "No idea."))
    log(served("twice", "What does zip do?", "It compresses files."))
    log(served("flip", "What is pathlib?", "Paths as objects."))
    log(served("other-endpoint", "Summarize this.", "A summary.", endpoint="summarize"))
    log(served("staging", "What is a lambda?", "A small function.", variant="staging"))
    vote(store, "up", "up", at=_ts("2026-11-02"))
    vote(store, "fixed", "down", "An unordered collection of unique items.",
         at=_ts("2026-11-03"))
    vote(store, "bare", "down", at=_ts("2026-11-04"))
    # One reviewer changes their mind: the store keeps their latest vote.
    vote(store, "twice", "up", at=_ts("2026-11-05"))
    vote(store, "twice", "down", "It pairs items of iterables.", at=_ts("2026-11-05", 13))
    # Two reviewers disagree: the later vote is the one that counts.
    vote(store, "flip", "down", reviewer="ann", at=_ts("2026-11-06"))
    vote(store, "flip", "up", reviewer="bob", at=_ts("2026-11-06", 14))
    vote(store, "other-endpoint", "up", at=_ts("2026-11-07"))
    vote(store, "staging", "up", at=_ts("2026-11-08"))


def _targets(convs: list[D.Conversation]) -> dict[str, tuple[tuple[str, str], ...]]:
    return {c.source.removeprefix("feedback:"): c.messages for c in convs}


def test_reviewed_answers_become_conversations(store: Store) -> None:
    _seed(store)
    got = _targets(D.from_feedback(store.export_feedback(endpoint="rag-qa")))
    assert got == {
        "up": (("user", "What is a dict?"), ("assistant", "A mapping.")),  # client system gone
        "fixed": (("user", "What is a set?"),
                  ("assistant", "An unordered collection of unique items.")),
        "twice": (("user", "What does zip do?"), ("assistant", "It pairs items of iterables.")),
        "flip": (("user", "What is pathlib?"), ("assistant", "Paths as objects.")),
        "staging": (("user", "What is a lambda?"), ("assistant", "A small function.")),
    }  # "bare" (down, no comment) is left out; "other-endpoint" is filtered out
    assert list(got) == ["up", "fixed", "twice", "flip", "staging"]  # order of latest votes


def test_a_later_vote_without_a_correction_drops_the_answer(store: Store) -> None:
    store.log_request(served("r", "What is a set?", "Unique items."))
    vote(store, "r", "up", reviewer="ann", at=_ts("2026-11-02"))
    assert len(D.from_feedback(store.export_feedback())) == 1
    vote(store, "r", "down", reviewer="bob", at=_ts("2026-11-03"))
    assert D.from_feedback(store.export_feedback()) == []


@pytest.mark.parametrize(("feedback", "expected"), [
    ({}, {"up", "fixed", "twice", "flip", "other-endpoint", "staging"}),
    ({"endpoint": "rag-qa"}, {"up", "fixed", "twice", "flip", "staging"}),
    ({"endpoint": "rag-qa", "variant": "production"}, {"up", "fixed", "twice", "flip"}),
    ({"variant": "staging"}, {"staging"}),
    ({"since": "2026-11-05"}, {"twice", "flip", "other-endpoint", "staging"}),
    ({"until": "2026-11-05"}, {"up", "fixed"}),
    ({"since": "2026-11-03", "until": "2026-11-07", "endpoint": "rag-qa"}, {"fixed", "twice", "flip"}),
    ({"endpoint": "nowhere"}, set()),
])
def test_a_recipes_feedback_filter_selects_reviewed_answers(
    store: Store, tmp_path: Path, feedback: dict[str, str], expected: set[str]
) -> None:
    _seed(store)
    write_jsonl(tmp_path / "style.jsonl", [[("user", "Hi?"), ("assistant", "Hello.")]])
    recipe = Recipe.model_validate({"name": "probe", "description": "d", "data": [
        {"jsonl": "style.jsonl"}, {"feedback": feedback}], "train": {"steps": 1}})
    convs = D.load_conversations(recipe, tmp_path, store)
    assert convs[0].source == f"{tmp_path / 'style.jsonl'}:1"  # sources in recipe order
    assert set(_targets(convs[1:])) == expected


# -- versions and splits -------------------------------------------------------------------
def test_the_data_version_follows_the_conversations_only(tmp_path: Path) -> None:
    base = [[("user", f"Q{i}?"), ("assistant", f"A{i}.")] for i in range(4)]
    v = D.data_version(D.read_jsonl(write_jsonl(tmp_path / "a.jsonl", base)))
    assert D.data_version(D.read_jsonl(write_jsonl(tmp_path / "b.jsonl", base))) == v
    assert D.data_version(D.read_jsonl(tmp_path / "a.jsonl")) == v
    changed = [
        [*base[:3], [("user", "Q3?"), ("assistant", "A3!")]],           # an answer's text
        [*base[:3], [("system", "S"), ("user", "Q3?"), ("assistant", "A3.")]],  # a message
        base[:3],                                                        # one fewer
        [base[1], base[0], *base[2:]],                                   # the order
    ]
    versions = {D.data_version(D.read_jsonl(write_jsonl(tmp_path / f"c{i}.jsonl", c)))
                for i, c in enumerate(changed)}
    assert len(versions) == len(changed) and v not in versions


def _fake(n: int) -> list[D.Example]:
    return [D.Example([1, i + 2], [D.IGNORE, i + 2], f"ex{i}") for i in range(n)]


@pytest.mark.parametrize(("n", "share", "held"), [
    (32, 0.15, 5), (10, 0.1, 1), (3, 0.01, 1), (2, 0.9, 1), (5, 0.0, 0), (1, 0.5, 0)])
def test_the_split_holds_out_a_share_but_never_everything(n: int, share: float, held: int) -> None:
    train, held_out = D.split(_fake(n), share, seed=0)
    assert len(held_out) == held and len(train) == n - held
    assert {e.source for e in train} | {e.source for e in held_out} == {f"ex{i}" for i in range(n)}


def test_the_split_is_seeded() -> None:
    def held(seed: int) -> list[str]:
        return [e.source for e in D.split(_fake(32), 0.15, seed)[1]]

    assert held(0) == held(0) and held(1) == held(1)
    assert held(0) != held(1)


# -- the reference data ----------------------------------------------------------------------
def test_the_reference_conversations_are_in_the_house_style(tokenizer: Any) -> None:
    convs = D.read_jsonl(REFERENCE)
    assert 28 <= len(convs) <= 40
    assert sum(c.messages[0][0] == "system" for c in convs) >= 3
    assert sum(sum(r == "assistant" for r, _ in c.messages) == 2 for c in convs) >= 3
    style = re.compile(r"[^\n]+\nTip: [^\n]+")
    for c in convs:
        for role, text in c.messages:
            if role == "assistant":
                assert style.fullmatch(text), (c.source, text)
                answer = text.split("\nTip:")[0]
                assert len(re.findall(r"[.!?](?:\s|$)", answer)) <= 2, (c.source, answer)
        text = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for _, t in c.messages)
        ex = D.tokenize(tokenizer, c, max_len=384)  # the recipe's max_seq_len cuts nothing
        assert text <= 120 and ex is not None and len(ex.input_ids) <= 160, (c.source, text)
