"""The state of each endpoint's rollout and every decision that changed it.

State changes are compare-and-set (on the step and status the decider saw), so
gateway replicas that decide at once apply one decision, and each applied decision
writes its event in the same transaction.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmops.store.requests import row_dict
from llmops.store.schema import ROLLOUT_EVENTS, ROLLOUTS
from llmops.store.writer import Writer


class RolloutsMixin(Writer):
    def get_rollout(self, endpoint: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(ROLLOUTS).where(ROLLOUTS.c.endpoint == endpoint)).first()
        return row_dict(r) if r else None

    def list_rollouts(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(sa.select(ROLLOUTS))]

    def start_rollout(self, *, endpoint: str, candidate: str, baseline: str, share: float,
                      at: float, reason: str) -> dict[str, Any]:
        """The endpoint's rollout, begun now unless one exists (then that one, unchanged)."""
        with self.write_engine.begin() as conn:
            found = conn.execute(sa.select(ROLLOUTS).where(ROLLOUTS.c.endpoint == endpoint)).first()
            if found is not None:
                return row_dict(found)
            state = {"endpoint": endpoint, "candidate": candidate, "baseline": baseline,
                     "step": 0, "share": share, "status": "running", "started_at": at,
                     "updated_at": at}
            conn.execute(ROLLOUTS.insert().values(**state))
            conn.execute(ROLLOUT_EVENTS.insert().values(
                endpoint=endpoint, at=at, action="start", share=share, reason=reason,
                lam=None, difference=None, candidate_votes=0, baseline_votes=0))
        return state

    def advance_rollout(self, endpoint: str, *, expect_step: int, step: int, share: float,
                        status: str, at: float, event: dict[str, Any]) -> bool:
        """Apply a decision if the rollout is still running at `expect_step`; whether it was."""
        r = ROLLOUTS
        with self.write_engine.begin() as conn:
            done = conn.execute(r.update().where(
                r.c.endpoint == endpoint, r.c.step == expect_step, r.c.status == "running",
            ).values(step=step, share=share, status=status, updated_at=at)).rowcount
            if done != 1:
                return False
            conn.execute(ROLLOUT_EVENTS.insert().values(endpoint=endpoint, at=at, share=share,
                                                        **event))
        return True

    def reset_rollout(self, endpoint: str) -> None:
        """Forget the endpoint's rollout state (a new candidate starts a new rollout)."""
        with self.write_engine.begin() as conn:
            conn.execute(ROLLOUTS.delete().where(ROLLOUTS.c.endpoint == endpoint))

    def rollout_events(self, endpoint: str) -> list[dict[str, Any]]:
        q = (sa.select(ROLLOUT_EVENTS).where(ROLLOUT_EVENTS.c.endpoint == endpoint)
             .order_by(ROLLOUT_EVENTS.c.id))
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(q)]
