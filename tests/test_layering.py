"""The core never imports a transport: that is what lets one flow run on Asterisk and Twilio."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

CORE = ["ivr/vocabulary.py", "ivr/flow.py", "ivr/flowcheck.py", "ivr/engine.py",
        "ivr/hours.py", "ivr/announcements.py", "ivr/simulate.py", "ivr/privacy.py",
        *[str(p.relative_to(ROOT)) for p in (ROOT / "queues").glob("*.py")]]
FORBIDDEN = ("aiohttp", "panoramisk", "twilio", "ivr.transports", "ivr.web", "ivr.store",
             "sqlite3", "sqlite_utils", "socket", "asyncio", "time")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_io(module: str) -> None:
    found = imports(ROOT / module)
    bad = sorted(n for n in found for f in FORBIDDEN if n == f or n.startswith(f + "."))
    assert not bad, f"{module} imports {bad}"


def test_engine_never_reads_the_clock() -> None:
    source = (ROOT / "ivr" / "engine.py").read_text(encoding="utf-8")
    assert ".now(" not in source and "utcnow" not in source and "time.time" not in source
