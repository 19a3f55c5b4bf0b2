"""Evaluation and promotion gates.

Offline: `llmops eval run` runs a chain over a golden dataset and scores it with
ragas (`runner.py`, cached per chain version, item and metric). Online: thumbs
up/down from the feedback log, per endpoint and variant (`online.py`, `stats.py`).
Gates (`gates.py`, thresholds in `eval/gates.yaml`) move the `production` alias
only when compliance, the offline comparison and the online criterion pass.
"""
