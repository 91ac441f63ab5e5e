"""End-to-end fixtures: the demo shop run once (``demo_run``), its collector kept for the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.demo_run import DemoRun, shared_run


@pytest.fixture(scope="session")
def demo_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    yield from shared_run(request, tmp_path_factory)
