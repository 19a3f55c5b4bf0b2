"""Monitoring: what production does, turned into metrics, drift tests, alerts and triggers.

- `run.py`: `llmops monitor run`, every closed window written once (set-based), drift,
  alerts in window order, MLflow;
- `drift.py`: query drift (MMD with a permutation test) and unanswerable questions;
- `alerts.py`: alert rules, the signed webhook, triggers with cool-downs and dry runs;
- `config.py`: the `monitor:` section of llmops.yaml; `report.py`: PNG charts.

Rollouts decided by votes are `llmops/rollout.py` (the test and the policy) and
`llmops/serving/rollout.py` (the gateway applying them).
"""
