"""schemathesis against /openapi.json: no 500, no response that breaks the documented schema.

Each operation's cases come from schemathesis' hypothesis strategy and run
against the gateway under uvicorn with every role's key (client, reviewer, metrics,
admin) and with none: no role, and no refusal, may give a 500.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.serving.conftest import Server, auth

CHECKS = [checks.not_a_server_error, checks.response_schema_conformance,
          checks.status_code_conformance, checks.content_type_conformance]
EXAMPLES = 12  # per operation; keeps the run to seconds


def test_api_conforms_to_its_schema(make_app: Any, keys: dict[str, str]) -> None:
    with Server(make_app()) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        ops = [result.ok() for result in schema.get_all_operations()]
        assert len(ops) >= 12
        for op in ops:
            @given(case=op.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                if case.path == "/v1/chat/completions" and isinstance(case.body, dict):
                    case.body["model"] = "chat"  # a real endpoint: random names only get 404
                for role in ("admin", "client", "reviewer", "metrics"):
                    case.call_and_validate(headers=auth(keys[role]), checks=CHECKS)
                case.call_and_validate(headers={}, checks=CHECKS)

            run()
