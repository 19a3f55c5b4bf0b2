"""Fixtures of the generation floor: the mock OpenAI server, and a backend of each kind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mock_openai import MockOpenAI


@pytest.fixture(scope="module")
def mock() -> Iterator[MockOpenAI]:
    with MockOpenAI() as server:
        yield server


@pytest.fixture
def server(mock: MockOpenAI) -> MockOpenAI:
    """The module's mock server with no faults, delays or counts left by a test before."""
    mock.state.faults.clear()
    mock.state.calls = 0
    mock.state.bodies.clear()
    mock.state.delay_s = 0.0
    return mock
