"""The flow format: good flows load, each bad flow names its problem exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr import flow as f
from ivr.flowcheck import FlowContext, check_flow_file, check_flow_text, load_flow

from .conftest import FIXTURES, ROOT

BAD = sorted((FIXTURES / "flows" / "bad").glob("*.toml"))


def expected_message(path: Path) -> str:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: MESSAGE'"
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_flow_names_its_problem(path: Path, ctx: FlowContext) -> None:
    _flow, problems = check_flow_file(path, ctx)
    lines = [str(p) for p in problems]
    want = f"{path}: {expected_message(path)}"
    assert any(line.startswith(want) for line in lines), lines


@pytest.mark.parametrize("name", ["minimal", "every_kind"])
def test_good_flow_loads_without_problems(name: str, ctx: FlowContext) -> None:
    flow = load_flow(FIXTURES / "flows" / "good" / f"{name}.toml", ctx)
    assert flow.start in flow.nodes


def test_every_kind_is_parsed_into_its_node_type(ctx: FlowContext) -> None:
    flow = load_flow(FIXTURES / "flows" / "good" / "every_kind.toml", ctx)
    kinds = {n.kind: type(n) for n in flow.nodes.values()}
    assert set(kinds) == set(f.KINDS)
    menu = flow.nodes["menu"]
    assert isinstance(menu, f.Menu)
    assert dict(menu.options) == {"1": "case", "2": "english", "3": "msg", "4": "out", "#": "bye"}
    assert menu.prompt["sv"].audio == "sv/menu.wav"
    assert menu.prompt["en"].audio is None
    assert menu.timeout_s == 5.0 and menu.retries == 1
    tag = flow.nodes["tag"]
    assert isinstance(tag, f.SetNode) and dict(tag.attributes) == {"source": "ivr"}


def test_default_switchboard_flow_passes_against_default_config() -> None:
    from ivr.config import load_settings

    settings = load_settings(ROOT / "config.toml", env={})
    flow = load_flow(ROOT / "callflows" / "switchboard.toml", FlowContext.from_settings(settings))
    assert flow.languages == ("sv", "en")
    queues = {n.queue for n in flow.nodes.values() if isinstance(n, f.Queue)}
    assert queues == {"barn-utbildning", "bygga-bo-miljo", "vatten-avfall", "omsorg",
                      "felanmalan", "vaxeln"}


def test_problems_are_all_reported_at_once(ctx: FlowContext) -> None:
    text = """
start = "m"
languages = ["sv", "en"]
[nodes.m]
kind = "menu"
prompt.sv = "Tryck."
options = { "1" = "nowhere", "x" = "m" }
[nodes.q]
kind = "queue"
queue = "nope"
"""
    _flow, problems = check_flow_text(text, "f.toml", ctx)
    messages = [str(p) for p in problems]
    assert 'f.toml: node m: options.1: unknown target "nowhere"' in messages
    assert 'f.toml: node m: options: invalid menu key "x"; a key is one of 0-9, * or #' in messages
    assert "f.toml: node m: prompt: prompt missing for language en" in messages
    assert 'f.toml: node q: not reachable from start node "m"' in messages
    assert 'f.toml: node q: queue: unknown queue "nope"' in messages


def test_a_loop_through_a_menu_is_allowed(ctx: FlowContext) -> None:
    text = """
start = "a"
languages = ["sv"]
[nodes.a]
kind = "say"
prompt.sv = "Hej."
next = "m"
[nodes.m]
kind = "menu"
prompt.sv = "Tryck 1 för att höra igen."
options = { "1" = "a" }
"""
    _flow, problems = check_flow_text(text, "f.toml", ctx)
    assert problems == []


def test_load_flow_raises_with_every_problem(ctx: FlowContext) -> None:
    with pytest.raises(f.FlowError) as info:
        load_flow(FIXTURES / "flows" / "bad" / "unknown_target.toml", ctx)
    assert 'unknown target "bey"' in str(info.value)
    assert [p.node for p in info.value.problems] == ["hello", "bye"]  # bye is unreachable too


def test_unreadable_file_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_bytes(b"\xff\xfe not utf-8")
    _flow, problems = check_flow_file(path)
    assert len(problems) == 1 and str(problems[0]).startswith(f"{path}: cannot read")
