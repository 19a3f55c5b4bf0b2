"""Monitoring: what production does, turned into metrics, alerts, triggers and rollouts.

- `sequential.py`: the always-valid test of two thumbs-up rates (mSPRT);
- `policy.py`: the rollout policy (steps, promotion, rollback, guardrails) and its
  simulation.
"""
