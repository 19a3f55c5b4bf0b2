"""A gate's decision: its checks, the verdict, and what acting on it does to the registry.

Pass: `production` moves to the candidate by compare-and-set. Fail: the candidate is
archived with the reasons. Either way the decision goes to the version's tags and
description and to the audit record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llmops.errors import AliasConflictError, GateError
from llmops.registry import Registry, VersionInfo

PRODUCTION = "production"


@dataclass(frozen=True)
class Check:
    group: str  # compliance | comparison | online
    name: str
    passed: bool
    detail: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "name": self.name, "passed": self.passed,
                "detail": self.detail, "numbers": self.numbers}


@dataclass
class Decision:
    model: str
    candidate: int
    production: int | None
    checks: list[Check]
    dataset: str
    dataset_version: str
    evaluation_run: str | None = None
    dry_run: bool = False
    moved: bool = False
    archived: bool = False
    at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def reason(self) -> str:
        """One line for the audit record."""
        verdict = "PASS" if self.passed else "FAIL"
        failed = "; ".join(f"{c.name}: {c.detail}" for c in self.failures)
        against = f"production {self.production}" if self.production else "baselines"
        return (f"gate {verdict} {self.model}/{self.candidate} against {against} on "
                f"{self.dataset}@{self.dataset_version} (eval run {self.evaluation_run})"
                + (f": {failed}" if failed else ""))

    @property
    def outcome(self) -> str:
        """What the gate did, in words."""
        if self.dry_run:
            return "dry run, nothing changed"
        if self.moved:
            return f"{self.model}@{PRODUCTION} -> {self.candidate}"
        return f"{self.model}/{self.candidate} archived"

    def echo(self, indent: str = "") -> None:
        """Print every check and the verdict (the CLI's and the demo's report)."""
        import typer

        for c in self.checks:
            mark = typer.style("PASS", fg="green") if c.passed else typer.style("FAIL", fg="red")
            typer.echo(f"{indent}  {mark}  {c.group}/{c.name}: {c.detail}")
        verdict = "PASS" if self.passed else "FAIL"
        typer.secho(f"{indent}gate {verdict}: {self.outcome}", bold=True,
                    fg="green" if self.passed else "red")

    def markdown(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        against = (f"production version {self.production}" if self.production
                   else "the baselines (first deployment)")
        lines = [f"### Gate {verdict} at {self.at}",
                 f"Against {against} on dataset {self.dataset}@{self.dataset_version}; evaluation run "
                 f"{self.evaluation_run}.", ""]
        lines += [f"- [{'x' if c.passed else ' '}] {c.group}/{c.name}: {c.detail}"
                  for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "candidate": self.candidate, "production": self.production,
                "passed": self.passed, "dry_run": self.dry_run, "moved": self.moved,
                "archived": self.archived, "dataset": self.dataset,
                "dataset_version": self.dataset_version, "evaluation_run": self.evaluation_run,
                "at": self.at, "checks": [c.to_dict() for c in self.checks]}


def act(reg: Registry, d: Decision, cand: VersionInfo) -> None:
    """Move the alias (pass) or archive (fail), and write the decision on the version."""
    if d.passed:
        try:
            reg.move_alias(d.model, PRODUCTION, d.candidate, expect=d.production,
                           reason=d.reason())
        except AliasConflictError as exc:
            raise GateError(f"gate passed but {exc}: another promotion won the race; run the "
                            "gate again against the new production") from None
        d.moved = True
    else:
        reg.archive(d.model, d.candidate, d.reason())
        d.archived = True
    checks = json.dumps([c.to_dict() for c in d.checks], default=str)
    reg.set_tags(d.model, d.candidate, {
        "gate.decision": "pass" if d.passed else "fail", "gate.at": d.at,
        "gate.against": d.production if d.production is not None else "baselines",
        "gate.dataset_version": d.dataset_version, "gate.evaluation_run": d.evaluation_run,
        "gate.checks": checks[:4900],
    })
    base = cand.description.split("\n\n### Gate ")[0].rstrip()
    reg.set_description(d.model, d.candidate, f"{base}\n\n{d.markdown()}".strip())
