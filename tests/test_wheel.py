"""The package stands alone: the wheel that `python -m build` makes, installed in a fresh
virtual environment outside this repository, scaffolds a project with `llmops init` and
runs its whole loop there on the embedded defaults (index refresh, prompt push, chain log,
evaluation, gate, one answer through the gateway).

The fresh environment takes the wheel with `--no-deps`; its dependencies come from this
session's environment through a `.pth` line (a path only: that environment's editable
llmops is not imported), so the test checks the wheel, not the index mirror. The wheel's
declared requirements are checked against what is installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.serving.conftest import free_port

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _run(*cmd: str | Path, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO, cwd=out,
         env=env)
    [built] = out.glob("llmops-*.whl")
    assert list(out.glob("llmops-*.tar.gz")), "no sdist"
    return built


def test_the_wheel_ships_its_templates_and_no_repository_folders(wheel: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"llmops", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1]
                    + ".dist-info"}
    for needed in ("llmops/scaffold/templates/llmops.yaml", "llmops/scaffold/templates/ci/"
                   "llmops-ci.sh", "llmops/store/migrations/script.py.mako",
                   "llmops/serving/pages/static/review.js"):
        assert any(n == needed for n in names), needed


def test_a_fresh_install_runs_the_whole_loop_of_a_new_project(
        wheel: Path, tmp_path: Path, model_cache: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = venv / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], capture_output=True, text=True, check=True)
    (Path(site.stdout.strip()) / "_llmops_deps.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LLMOPS_", "MLFLOW_", "PYTHON"))}
    env["LLMOPS_MODEL_CACHE"] = str(model_cache)  # the converted base model, shared
    _run(py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel,
         cwd=tmp_path, env=env)
    where = _run(py, "-c", "import llmops; print(llmops.__file__)", cwd=tmp_path, env=env)
    assert where.strip().startswith(str(venv)), where  # the wheel's, not this repository's
    missing = _run(py, "-c", _MISSING, cwd=tmp_path, env=env)
    assert missing.strip() == "[]", missing

    llmops = venv / "bin" / "llmops"
    project = tmp_path / "team"
    out = _run(llmops, "init", project, cwd=tmp_path, env=env)
    assert "wrote     llmops.yaml" in out
    chain = project / "chains" / "rag_qa.yaml"  # short answers: the loop, not the prose
    spec = yaml.safe_load(chain.read_text())
    spec["llm"]["max_tokens"] = 48
    chain.write_text(yaml.safe_dump(spec, sort_keys=False))

    def llm(*args: str) -> str:
        return _run(llmops, *args, cwd=project, env=env)

    assert "version 1 (new)" in llm("index", "refresh", "--no-progress")
    assert "registered version 1" in llm("prompts", "push")
    llm("prompts", "promote", "qa", "--version", "1", "--to", "staging")
    llm("chains", "log", "chains/rag_qa.py")
    llm("chains", "promote", "rag_qa", "--version", "1", "--to", "staging")
    assert "hit_rate" in llm("eval", "run", "chain.rag_qa@staging", "--dataset",
                             "eval/golden.jsonl")
    assert "gate PASS: chain.rag_qa@production -> 1" in llm("gate", "chain.rag_qa")
    assert (project / ".llmops" / "mlflow.db").is_file()  # state in the project's home

    port = free_port()
    server = subprocess.Popen([llmops, "serve", "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        key = None
        for line in server.stdout:
            if m := re.search(r"dev admin key \(shown once\): (\S+)", line):
                key = m.group(1)
                break
        assert key, "the gateway printed no dev key"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "not ready"
            time.sleep(0.5)
        r = httpx.post(f"{url}/v1/chat/completions", timeout=120,
                       headers={"Authorization": f"Bearer {key}"},
                       json={"model": "team-qa", "user": "u-1", "messages": [
                           {"role": "user", "content": "Who helps a newcomer in the first "
                                                       "month?"}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["choices"][0]["message"]["content"] and body["sources"]
        assert body["system_fingerprint"] == "chain.rag_qa/1"
        trace = json.loads(llm("trace", body["id"], "--json"))
        assert (trace["chain"]["ref"], trace["prompt"]["ref"], trace["index"]["version"]) == (
            "chain.rag_qa/1", "prompt.qa/1", 1)
    finally:
        server.terminate()
        server.wait(timeout=60)


# Every requirement of the installed llmops that nothing installed satisfies.
_MISSING = """
import importlib.metadata as md, json
from packaging.requirements import Requirement
missing = []
for spec in md.distribution("llmops").requires or []:
    req = Requirement(spec)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        if not req.specifier.contains(md.version(req.name), prereleases=True):
            missing.append(spec)
    except md.PackageNotFoundError:
        missing.append(spec)
print(json.dumps(missing))
"""
