"""LoRA adapters served from one shared base on the real SmolLM2: each adapter answers as a
model built for it alone, concurrent requests never mix adapters, the base weights exist
once, and an adapter of another base fails clearly without touching the base."""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from llmops.config import reset_settings
from llmops.errors import ChainError
from llmops.llm import create_llm
from llmops.llm.adapters import clear_batchers, loaded_bases
from llmops.llm.batching import Job, Sampling
from llmops.llm.local import LocalLLM, chat_ids

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = [
    "What is the capital of France?",
    "Name three built-in types of Python.",
    "Why use virtual environments?",
]
LIMIT = 16  # new tokens per answer
SEEDS = {"a": 1, "b": 4}  # the random LoRA weights of each (seeds whose answers differ)


def chat(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


def make_adapter(folder: Path, seed: int) -> Path:
    """A LoRA adapter of the base (q_proj, v_proj, rank 4) with random, non-zero matrices."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmops.hub import resolve_base_model

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(resolve_base_model())
        config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(model, config).save_pretrained(folder)
    return folder


def register_adapter(name: str, adapter_dir: Path, work: Path) -> int:
    """Register `adapter_dir` as a version of `name` (files in `artifacts/adapter/`), at
    production; its version."""
    from llmops.registry import get_registry

    reg = get_registry()
    model_dir = work / name / "model"
    shutil.copytree(adapter_dir, model_dir / "artifacts" / "adapter")
    digest = hashlib.sha256()
    for f in sorted(adapter_dir.rglob("*")):
        if f.is_file():
            digest.update(f.name.encode() + b"\0" + f.read_bytes())
    with reg.run("finetune", "x") as run:
        info, _ = reg.register(name, model_dir, content_hash=digest.hexdigest(), run=run)
    reg.move_alias(name, "production", info.version)
    return info.version


def alone(model: Any, tokenizer: Any, q: str) -> tuple[int, ...]:
    """The greedy answer of `model` to `q`, one prompt, plain transformers."""
    ids = torch.tensor([chat_ids(tokenizer, chat(q))])
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=LIMIT, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tokenizer.pad_token_id)
    return tuple(out[0, ids.shape[1]:].tolist())


@dataclass
class Made:
    """Two adapters on disk and the answers of models built alone: base, a, b."""

    dirs: dict[str, Path]
    tokens: dict[str, dict[str, tuple[int, ...]]]  # kind -> question -> answer tokens
    texts: dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Made:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmops.hub import resolve_base_model

    root = tmp_path_factory.mktemp("adapters")
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMOPS_HOME", str(root / "home"))
        mp.setenv("LLMOPS_MODEL_CACHE", str(model_cache))
        mp.setenv("LLMOPS_PROJECT_DIR", str(REPO))
        reset_settings()
        base_dir = resolve_base_model()
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        dirs = {k: make_adapter(root / k, seed) for k, seed in SEEDS.items()}
        models: dict[str, Any] = {"base": AutoModelForCausalLM.from_pretrained(base_dir).eval()}
        for k, folder in dirs.items():  # a fresh PeftModel over a fresh base copy each
            fresh = AutoModelForCausalLM.from_pretrained(base_dir)
            models[k] = PeftModel.from_pretrained(fresh, str(folder)).eval()
        tokens = {k: {q: alone(m, tokenizer, q) for q in QUESTIONS} for k, m in models.items()}
    reset_settings()
    texts = {k: {q: tokenizer.decode(t, skip_special_tokens=True).strip() for q, t in ts.items()}
             for k, ts in tokens.items()}
    return Made(dirs, tokens, texts)


@pytest.fixture
def registered(home: Path, made: Made, tmp_path: Path) -> Iterator[dict[str, int]]:
    """adapter.a and adapter.b in this test's registry, each at production; no base model
    carries adapters of another test, before or after."""
    clear_batchers()
    yield {f"adapter.{k}": register_adapter(f"adapter.{k}", d, tmp_path)
           for k, d in made.dirs.items()}
    clear_batchers()


def local(adapter: str | None = None) -> LocalLLM:
    llm = create_llm({"backend": "local", "max_tokens": LIMIT, "adapter": adapter})
    assert isinstance(llm, LocalLLM)
    return llm


def tokens_of(llm: LocalLLM, q: str) -> tuple[int, ...]:
    """The answer tokens through the shared batcher, as a job of this backend's adapter."""
    batcher = llm.batcher()
    job = Job(chat_ids(batcher.tokenizer, chat(q)), LIMIT, Sampling(), adapter=llm.adapter_name)
    return batcher.submit(job).result().token_ids


def test_base_and_each_adapter_answer_as_a_model_built_for_it_alone(
        registered: dict[str, int], made: Made) -> None:
    assert registered == {"adapter.a": 1, "adapter.b": 1}
    llms = {"base": local(), "a": local("adapter.a@production"), "b": local("adapter.b/1"),
            "a, its folder": local(str(made.dirs["a"]))}  # how an adapter's pyfunc names it
    expected = {**made.tokens, "a, its folder": made.tokens["a"]}
    for q in QUESTIONS:
        got = {kind: tokens_of(llm, q) for kind, llm in llms.items()}
        assert got == {kind: expected[kind][q] for kind in llms}, q  # token for token
        assert len({got["base"], got["a"], got["b"]}) == 3, q  # three different answers
    for kind in ("base", "a", "b"):
        gen = llms[kind].generate(chat(QUESTIONS[0]))
        assert gen.text == made.texts[kind][QUESTIONS[0]]
        assert gen.completion_tokens == len(made.tokens[kind][QUESTIONS[0]])
    assert {llm.base() for llm in llms.values()} == {llms["base"].base()}
    assert llms["a"].model_id.endswith("+adapter.a@production")


def test_concurrent_requests_for_base_and_adapters_get_their_own_answers(
        registered: dict[str, int], made: Made) -> None:
    llms = {"base": local(), "a": local("adapter.a@production"), "b": local("adapter.b@production")}
    for llm in llms.values():
        llm.adapter_name  # noqa: B018  (loads the adapter before the burst)
    cases = [(kind, q) for kind in llms for q in QUESTIONS] * 2
    start = threading.Barrier(len(cases))

    def ask(case: tuple[str, str]) -> str:
        start.wait()
        return llms[case[0]].generate(chat(case[1])).text

    batcher = llms["base"].batcher()
    before = len(batcher.sizes)
    with ThreadPoolExecutor(len(cases)) as pool:
        answers = list(pool.map(ask, cases))
    wrong = [(kind, q, text) for (kind, q), text in zip(cases, answers, strict=True)
             if text != made.texts[kind][q]]
    assert not wrong
    sizes = batcher.sizes[before:]
    assert sum(sizes) == len(cases) and max(sizes) > 1, sizes  # batched, one adapter a batch
    assert llms["a"].batcher() is batcher and llms["b"].batcher() is batcher


def test_two_adapters_share_one_base_in_memory(registered: dict[str, int]) -> None:
    import psutil

    from llmops.hub import load_causal_lm

    model, _ = load_causal_lm()
    plain = {p.data_ptr() for p in model.parameters()}
    base_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    base, a, b = local(), local("adapter.a@production"), local("adapter.b@production")
    base.generate(chat(QUESTIONS[0]))  # the worker and generate's buffers, before measuring
    process = psutil.Process()
    gc.collect()
    rss = [process.memory_info().rss]
    for llm in (a, b):
        llm.generate(chat(QUESTIONS[0]))  # loads its adapter
        gc.collect()
        rss.append(process.memory_info().rss)

    shared = a.base()
    assert shared is b.base() is base.base() and shared.model is model
    assert loaded_bases() == [shared] and len(shared.adapters) == 2
    names = {a.adapter_name, b.adapter_name}
    assert len(names) == 2 and names == set(shared.peft.peft_config)
    # Every model in play (the base, the peft model around it) reaches the same base tensors.
    for m in (model, shared.peft):
        params = dict(m.named_parameters())
        assert {p.data_ptr() for n, p in params.items() if "lora_" not in n} == plain
        lora = [p for n, p in params.items() if "lora_" in n]
        assert sum(p.numel() * p.element_size() for p in lora) < base_bytes / 100
    print(f"base {base_bytes / 2**20:.0f} MiB; RSS after base, a, b: "
          f"{[round(r / 2**20) for r in rss]} MiB")
    assert rss[2] - rss[1] < base_bytes / 2, "the second adapter copied the base"
    assert rss[2] - rss[0] < base_bytes, "two adapters cost a base model"


def test_an_adapter_that_does_not_fit_the_base_fails_clearly_and_leaves_it_alone(
        registered: dict[str, int], made: Made, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    narrow = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128,
                                          num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=4, vocab_size=500))
    get_peft_model(narrow, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(
        tmp_path / "narrow")
    gpt2 = GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=500,
                                      bos_token_id=0, eos_token_id=0))
    get_peft_model(gpt2, LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True)
                   ).save_pretrained(tmp_path / "gpt2")
    # The right modules and sizes, but a rank its matrices do not have: peft itself refuses,
    # after it wrapped the model's layers.
    rank = shutil.copytree(made.dirs["a"], tmp_path / "rank")
    config = json.loads((rank / "adapter_config.json").read_text())
    (rank / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))

    base, q = local(), QUESTIONS[0]
    cases = [
        (str(tmp_path / "narrow"), r"does not fit the base model .*: model\.layers\.0\.self_attn"
                                   r"\.q_proj maps 576 to 576 features there"),
        (str(tmp_path / "gpt2"), r"does not fit .*adapts transformer\.h\.0\.attn\.c_attn, which "
                                 r"that model lacks"),
        (str(rank), r"cannot be loaded into the base model .*size mismatch"),
        ("adapter.nope@production", r"adapter adapter\.nope@production: .*adapter\.nope"),
        (str(tmp_path / "missing"), r"no adapter_config\.json"),
    ]
    for spec, match in cases:
        with pytest.raises(ChainError, match=match):
            local(spec).generate(chat(q))
    shared = base.base()
    assert shared.peft is None and not shared.adapters  # the failed wrap was undone
    assert tokens_of(base, q) == made.tokens["base"][q]

    a = local("adapter.a@production")
    assert tokens_of(a, q) == made.tokens["a"][q]
    with pytest.raises(ChainError, match="size mismatch"):  # now beside a loaded adapter
        local(str(rank)).generate(chat(q))
    assert set(shared.peft.peft_config) == {a.adapter_name}
    assert tokens_of(a, q) == made.tokens["a"][q] and tokens_of(base, q) == made.tokens["base"][q]
