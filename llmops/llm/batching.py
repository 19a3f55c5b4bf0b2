"""Batched generation for an in-process model: concurrent callers share one `generate`.

One worker thread per loaded model takes jobs (token ids, limits, sampling)
from a queue and runs them as batches: prompts left-padded to one length, one
`model.generate` for the whole batch, each row stopped at its own limit or
end-of-sequence. Callers wait on a future (threads) or await it (event loops,
no thread held); a streaming caller also gets its own text pieces from the
batch as the tokens come.

Gathering: a lone caller never waits (the worker starts at once when the last
batch was a single job and nothing else is queued). Under concurrency the
worker waits a short window, at most 5% of the last batch's time and
`MAX_GATHER_S`, for as many jobs as the last batch had (callers whose answers
just came back are preparing their next request meanwhile), and goes on taking
jobs while they arrive in a burst (less than `QUIET_S` apart).

Adapters: a job names the adapter it runs with (None: the plain base), and a
batch holds jobs of one adapter and one sampling only. Before a batch the
worker enters `activate(adapter)`, which sets the model up for it (the local
backend turns that adapter's LoRA layers on), holding `model_lock`, which
whoever changes the model's layers takes too.

Exactness: greedy rows give the tokens they would give alone. Padding is
masked out of attention (positions follow the mask), and the repetition
penalty, which transformers applies over all input ids, is applied here over
each row's own tokens only (`llmops.llm.penalties`). A seeded sampling job
runs alone so its seed makes it repeatable.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from llmops.llm import stops
from llmops.llm.base import TokenLogprob
from llmops.llm.logprobs import Logprobs, answer_logprobs
from llmops.llm.penalties import AnswerPenalties, RowRepetitionPenalty

log = logging.getLogger(__name__)

MAX_GATHER_S = 0.1  # the longest wait for company before a batch starts, s
GATHER_SHARE = 0.05  # of the last batch's time, the most spent waiting for company
QUIET_S = 0.005  # past its target, a batch still takes jobs that come this close together, s


@dataclass(frozen=True)
class Sampling:
    """What must be equal for jobs to share a batch."""

    temperature: float = 0.0  # 0: greedy
    repetition_penalty: float = 1.0
    top_p: float = 1.0  # nucleus sampling (with temperature > 0)
    presence_penalty: float = 0.0  # OpenAI's: off the logit of each token already answered
    frequency_penalty: float = 0.0  # ... times how often it was


@dataclass(eq=False)
class Job:
    """One prompt to complete."""

    ids: list[int]  # the chat template applied, tokenized
    max_new_tokens: int
    sampling: Sampling = Sampling()
    seed: int | None = None
    sink: Callable[[str], None] | None = None  # gets the text pieces of a streaming caller
    future: Future[Result] = field(default_factory=Future)
    cancelled: bool = False  # the caller left: stop its row at the next token
    adapter: str | None = None  # the adapter's name in the model; None: the plain base
    stop: tuple[str, ...] = ()  # stop sequences: the row ends at the token completing one
    grammar: str | None = None  # JSON mode: an llguidance grammar the answer must follow
    logprobs: int | None = None  # keep each token's log probability and this many best others

    @property
    def alone(self) -> bool:
        """A seeded sampling job runs alone: its seed must make it repeatable."""
        return self.seed is not None and self.sampling.temperature > 0

    def fits(self, other: Job) -> bool:
        """Whether the two may share a batch: same adapter, same sampling, neither alone."""
        return (not (self.alone or other.alone) and self.adapter == other.adapter
                and self.sampling == other.sampling)


@dataclass(frozen=True)
class Result:
    text: str
    prompt_tokens: int
    completion_tokens: int  # new tokens, the end-of-sequence token included
    finish_reason: str  # stop | length
    batch_size: int  # how many jobs shared the generate call
    token_ids: tuple[int, ...] = ()  # the new tokens
    logprobs: tuple[TokenLogprob, ...] | None = None  # of the answer's tokens, when asked


Activate = Callable[[str | None], contextlib.AbstractContextManager[Any]]


@contextlib.contextmanager
def _no_adapters(adapter: str | None) -> Iterator[None]:
    if adapter is not None:
        raise ValueError(f"adapter {adapter!r}: this batcher's model has no adapters")
    yield


class Batcher:
    """The worker of one loaded model: `submit` jobs, get futures of their results.

    `activate(adapter)` sets the model up for a batch of that adapter (None: the plain
    base); by default the model has no adapters.
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 16,
                 activate: Activate = _no_adapters) -> None:
        self.model, self.tokenizer, self.max_batch = model, tokenizer, max_batch
        self.activate = activate
        self.model_lock = threading.Lock()  # held while a batch runs, and while layers change
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else tokenizer.eos_token_id)
        self.eos_ids = _eos_ids(model, tokenizer)
        self._queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._carry: deque[Job] = deque()  # taken from the queue, left for a later batch
        self._last_size, self._last_s = 0, 0.0
        self._company = False  # whether the batch being gathered waits for others
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sizes: list[int] = []  # the size of each batch run (benchmarks report them)
        self.waits: list[float] = []  # how long each batch waited for company (0: not at all), s

    def submit(self, job: Job) -> Future[Result]:
        if self._worker is None:
            with self._lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._loop, name="llmops-generate",
                                                    daemon=True)
                    self._worker.start()
        self._queue.put(job)
        return job.future

    # -- the worker --------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._carry.popleft() if self._carry else self._queue.get()
            gathering = time.perf_counter()
            batch = self._gather(first)
            started = time.perf_counter()
            # Recorded before the callers hear back: one that reads them sees its batch.
            self.waits.append(started - gathering if self._company else 0.0)
            self.sizes.append(len(batch))
            del self.sizes[:-1000], self.waits[:-1000]
            try:
                self._run(batch)
            except BaseException as exc:  # every caller of the batch hears of it
                log.exception("batched generation failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
            self._last_size, self._last_s = len(batch), time.perf_counter() - started

    def _gather(self, first: Job) -> list[Job]:
        batch = [first]
        self._company = False
        if first.alone:
            return batch
        company = self._company = (self._last_size > 1 or bool(self._carry)
                                   or not self._queue.empty())
        target = min(self.max_batch, max(self._last_size, 2)) if company else 1
        deadline = time.perf_counter() + max(QUIET_S, min(MAX_GATHER_S, GATHER_SHARE * self._last_s))
        skipped: list[Job] = []
        while len(batch) < self.max_batch:
            if not company:
                wait_until = None
            elif len(batch) < target:
                wait_until = deadline
            else:
                wait_until = min(deadline, time.perf_counter() + QUIET_S)
            job = self._take(wait_until)
            if job is None:
                break
            if not job.fits(first):
                skipped.append(job)
            else:
                batch.append(job)
        self._carry.extend(skipped)
        return batch

    def _take(self, deadline: float | None) -> Job | None:
        """The next queued job: waiting until `deadline`, or not at all when it is None."""
        for i, job in enumerate(self._carry):
            if not job.alone:
                del self._carry[i]
                return job
        try:
            if deadline is None:
                return self._queue.get_nowait()
            return self._queue.get(timeout=max(deadline - time.perf_counter(), 0.0))
        except queue.Empty:
            return None

    def _run(self, batch: list[Job]) -> None:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        batch = [j for j in batch if j.future.set_running_or_notify_cancel()]
        if not batch:
            return
        width = max(len(j.ids) for j in batch)
        pads = [width - len(j.ids) for j in batch]
        input_ids = torch.tensor([[self.pad_id] * p + j.ids for p, j in zip(pads, batch,
                                                                             strict=True)])
        mask = torch.tensor([[0] * p + [1] * len(j.ids) for p, j in zip(pads, batch,
                                                                         strict=True)])
        sampling, limit = batch[0].sampling, max(j.max_new_tokens for j in batch)
        processors = LogitsProcessorList()
        if sampling.repetition_penalty != 1.0:
            processors.append(RowRepetitionPenalty(sampling.repetition_penalty, pads))
        if sampling.presence_penalty or sampling.frequency_penalty:
            processors.append(AnswerPenalties(sampling.presence_penalty,
                                              sampling.frequency_penalty, width))
        if any(j.grammar for j in batch):  # last: nothing may lift its mask
            from llmops.llm.structured import Grammars

            processors.append(Grammars(self.tokenizer, [j.grammar for j in batch], width,
                                       int(self.tokenizer.eos_token_id)))
        scores = None
        if any(j.logprobs is not None for j in batch):  # after the mask: it reads what is left
            scores = Logprobs([j.logprobs for j in batch])
            processors.append(scores)
        rows = _Rows(self, batch, width, scores)
        options: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None,
                                   "top_k": None}
        if sampling.temperature > 0:
            options = {"do_sample": True, "temperature": sampling.temperature,
                       "top_p": sampling.top_p, "top_k": None}
        device = self.model.device
        with (self.model_lock, self.activate(batch[0].adapter),
              seeded(batch[0].seed if len(batch) == 1 else None), torch.inference_mode()):
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=mask.to(device),
                max_new_tokens=limit, pad_token_id=self.pad_id, logits_processor=processors,
                stopping_criteria=StoppingCriteriaList([rows]), streamer=rows, **options)
        for i, job in enumerate(batch):
            new = out[i, width:width + job.max_new_tokens].tolist()
            end = next((n for n, t in enumerate(new) if t in self.eos_ids), None)
            tokens = new if end is None else new[:end + 1]
            finish = "length" if end is None else "stop"
            if rows.stopped[i]:  # a stop sequence ended it: the text before it
                tokens, finish = rows.tokens[i], "stop"
            text = str(self.tokenizer.decode(tokens, skip_special_tokens=True)).strip()
            if job.stop:
                text = stops.cut(text, job.stop)[0].rstrip()
            rows.flush(i, text)
            logprobs = None if scores is None or job.logprobs is None else answer_logprobs(
                self.tokenizer, scores.records[i], tokens, text, self.eos_ids)
            job.future.set_result(Result(text, len(job.ids), len(tokens), finish, len(batch),
                                         tuple(tokens), logprobs))


class _Rows:
    """Per-row bookkeeping during one generate: limits, cancellation and streaming.

    Serves as the stopping criterion (a row stops at its own limit, or when its
    caller left) and as the streamer (each streaming row's new text goes to its sink).
    """

    def __init__(self, batcher: Batcher, batch: list[Job], width: int,
                 scores: Logprobs | None = None) -> None:
        self.tokenizer, self.eos_ids, self.batch = batcher.tokenizer, batcher.eos_ids, batch
        self.width, self.scores = width, scores
        self.tokens: list[list[int]] = [[] for _ in batch]
        self.ended = [False] * len(batch)
        self.stopped = [False] * len(batch)  # ended by a stop sequence
        self.sent = [""] * len(batch)

    # StoppingCriteria
    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        n = input_ids.shape[1] - self.width
        return torch.tensor([n >= j.max_new_tokens or j.cancelled or self.stopped[i]
                             for i, j in enumerate(self.batch)], device=input_ids.device)

    # streamer
    def put(self, value: Any) -> None:
        if value.dim() > 1:  # the prompt, handed over first
            return
        for i, token in enumerate(value.tolist()):
            job = self.batch[i]
            if self.ended[i]:
                continue
            self.tokens[i].append(token)
            if self.scores is not None:
                self.scores.chosen(i, token)
            if token in self.eos_ids or len(self.tokens[i]) >= job.max_new_tokens:
                self.ended[i] = True
            if job.stop or (job.sink is not None and not job.cancelled):
                text = str(self.tokenizer.decode(self.tokens[i], skip_special_tokens=True))
                if text.endswith("\ufffd"):  # a character still incomplete
                    continue
                text = text.strip()
                if job.stop:  # send nothing that a stop sequence may yet begin
                    end, hit = stops.safe_end(text, job.stop)
                    self.ended[i] = self.ended[i] or hit
                    self.stopped[i] = hit
                    text = text[:end].rstrip()
                if job.sink is not None and not job.cancelled:
                    self._send(i, text)

    def end(self) -> None:
        pass

    def flush(self, row: int, final: str) -> None:
        """Send what remains of a row's final text."""
        if self.batch[row].sink is not None and not self.batch[row].cancelled:
            self._send(row, final)

    def _send(self, row: int, text: str) -> None:
        # Trailing spaces wait for what follows them: the final text is stripped.
        sent = self.sent[row]
        if len(text) > len(sent) and text.startswith(sent):
            sink = self.batch[row].sink
            assert sink is not None
            self.sent[row] = text
            try:
                sink(text[len(sent):])
            except Exception:  # a sink that fails loses its caller, not the batch
                self.batch[row].cancelled = True


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Seed torch for this block only: a seed must not reset the caller's random state."""
    import torch

    with torch.random.fork_rng(enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        yield
