from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flowcheck import FlowContext

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def ctx() -> FlowContext:
    """A small config context: what the fixture flows are checked against."""
    return FlowContext(
        schedules=frozenset({"office"}),
        queues={"vaxeln": ("ovrigt", "personsokning")},
        slots={"storning": frozenset({"sv", "en"})},
        recordings_dir=FIXTURES / "recordings",
    )
