"""The `ivr` command's contracts: exit codes, output lines, JSON shape."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest

from ivr.cli import main

from .conftest import FIXTURES, ROOT

CONFIG = str(ROOT / "config.toml")
FLOW = str(ROOT / "callflows" / "switchboard.toml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_passes_the_default_flows(capsys) -> None:
    code, out, _ = run(capsys, "check", "--config", CONFIG, str(ROOT / "callflows"))
    assert code == 0
    assert out.startswith("ok: 1 flow file, 29 nodes, no problems")


def test_check_prints_one_line_per_problem_and_exits_1(capsys) -> None:
    bad = FIXTURES / "flows" / "bad"
    code, out, err = run(capsys, "check", "--config", CONFIG, str(bad / "unknown_kind.toml"),
                         str(bad / "unreachable.toml"))
    lines = out.splitlines()
    assert code == 1
    assert lines[0].startswith(f'{bad / "unknown_kind.toml"}: node m: kind: unknown node kind "meny"')
    assert lines[1] == f'{bad / "unreachable.toml"}: node orphan: not reachable from start node "hello"'
    assert len(lines) == 2 and "2 problems in 2 flow files" in err


def test_check_of_a_missing_path_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys, "check", "--config", CONFIG, "nope.toml")
    assert code == 2 and "nope.toml: no such file or directory" in err


def test_simulate_json_gives_path_end_and_language(capsys) -> None:
    code, out, _ = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                       "--caller", "+46701234567", "--keys", "2,1", "--json")
    assert code == 0
    assert json.loads(out) == {
        "path": ["greeting", "disturbance", "opening", "main_menu", "bygga_menu",
                 "bygga_bygglov", "bygga"],
        "end": "queue:bygga-bo-miljo",
        "language": "sv",
    }


def test_simulate_when_keys_run_out_the_caller_hangs_up(capsys) -> None:
    code, out, _ = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                       "--json")
    assert code == 0 and json.loads(out)["end"] == "caller-hangup"


def test_simulate_hangup_key_and_timeout_key(capsys) -> None:
    _, out, _ = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                    "--keys", "t,h", "--json")
    result = json.loads(out)
    assert result["end"] == "caller-hangup" and result["path"][-1] == "main_menu"


def test_simulate_on_midsommarafton_reaches_the_closed_message(capsys) -> None:
    _, out, _ = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-06-19T10:00",
                    "--keys", "1", "--json")
    result = json.loads(out)
    assert result["path"][3:5] == ["holiday", "closed"] and result["end"] == "message"


def test_simulate_prints_a_readable_path(capsys) -> None:
    code, out, _ = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                       "--keys", "9,1")
    assert code == 0
    assert "path: greeting > disturbance > opening > main_menu > english > main_menu > barn" in out
    assert "end: queue:barn-utbildning   language: en" in out
    assert "<- Digits 9" in out


def test_simulate_rejects_bad_keys_and_bad_times(capsys) -> None:
    code, _, err = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                       "--keys", "1,x")
    assert code == 2 and '"x" is not DTMF' in err
    code, _, err = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "tisdag")
    assert code == 2 and 'expected a date and time like 2026-12-01T09:30, got "tisdag"' in err


def test_simulate_with_db_needs_a_hash_key_or_demo(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("IVR_HASH_KEY", raising=False)
    db = tmp_path / "ivr.db"
    code, _, err = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                       "--keys", "1", "--db", str(db))
    assert code == 2 and "IVR_HASH_KEY is not set" in err
    assert not db.exists()


def test_simulate_records_the_call_without_the_raw_number(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IVR_HASH_KEY", "a-test-key-of-sufficient-length")
    db = tmp_path / "ivr.db"
    code, out, _ = run(capsys, "simulate", FLOW, "--config", CONFIG, "--at", "2026-12-01T09:30",
                       "--caller", "+46701234567", "--keys", "5", "--db", str(db))
    assert code == 0 and "recorded as call" in out
    con = sqlite3.connect(db)
    row = con.execute("select end, path, caller_hash from calls").fetchone()
    assert row[0] == "queue:felanmalan"
    assert json.loads(row[1])[-1] == "felanmalan"
    assert row[2] and "701234567" not in row[2]
    dump = "\n".join(con.iterdump())
    assert "701234567" not in dump


def test_test_flows_runs_the_default_scenarios(capsys) -> None:
    code, out, _ = run(capsys, "test-flows", "--config", CONFIG)
    last = out.strip().splitlines()[-1]
    assert code == 0 and last.endswith(" passed, 0 failed")
    assert int(last.split()[0]) >= 30


def test_test_flows_shows_a_readable_diff_on_mismatch(capsys, tmp_path) -> None:
    shutil.copy(FLOW, tmp_path / "switchboard.toml")
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "wrong.toml").write_text(
        'flow = "../switchboard.toml"\n'
        "[[scenario]]\n"
        'name = "Key 1 reaches växeln (wrong on purpose)"\n'
        "at = 2026-12-01T09:30:00\n"
        'keys = ["1"]\n'
        'expect_end = "queue:vaxeln"\n'
        'expect_path = ["greeting", "disturbance", "opening", "main_menu", "vaxeln"]\n',
        encoding="utf-8")
    code, out, _ = run(capsys, "test-flows", "--config", CONFIG, str(tmp_path / "scenarios"))
    assert code == 1
    assert "FAIL" in out and "Key 1 reaches växeln (wrong on purpose)" in out
    assert "end: expected queue:vaxeln, got queue:barn-utbildning" in out
    assert "-vaxeln" in out and "+barn" in out
    assert out.strip().endswith("0 passed, 1 failed")


def test_a_broken_config_is_reported_with_file_and_key(capsys, tmp_path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[hours.office]\nmonday = "8-16"\n', encoding="utf-8")
    code, _, err = run(capsys, "check", "--config", str(cfg), FLOW)
    assert code == 2
    assert 'hours.office.monday: expected "HH:MM-HH:MM", got "8-16"' in err


def test_python_dash_m_ivr_works() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ivr", "--version"], capture_output=True,
                          text=True, env=env, cwd=ROOT, check=False)
    assert done.returncode == 0 and done.stdout.startswith("ivr ")


def commands() -> list[str]:
    from ivr.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", commands())
def test_every_command_is_documented_in_the_readme(command: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"ivr {command}" in readme
