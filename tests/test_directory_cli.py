"""`ivr directory import | search | list`: output lines and exit codes."""

from __future__ import annotations

import json

from ivr.cli import main

from .conftest import FIXTURES, ROOT
from .test_directory import EXPECTED_PROBLEMS

CONFIG = str(ROOT / "config.toml")
FILES = FIXTURES / "directory"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_import_says_what_it_detected_and_counts(capsys, tmp_path) -> None:
    db = str(tmp_path / "ivr.db")
    good = FILES / "good_sv_semicolon.csv"
    code, out, _ = run(capsys, "directory", "import", str(good), "--config", CONFIG, "--db", db, "--dry-run")
    assert code == 0
    assert out.endswith("10 added, 0 updated, 0 unchanged, 0 removed (--dry-run: nothing written)\n")
    code, out, _ = run(capsys, "directory", "list", "--config", CONFIG, "--db", db)
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "directory", "import", str(good), "--config", CONFIG, "--db", db)
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == f"{good}: UTF-8 with BOM, semicolon-separated, 10 entries"
    assert lines[1].startswith("10 added, 0 updated, 0 unchanged, 0 removed in ")
    code, out, _ = run(capsys, "directory", "import", str(FILES / "windows1252_comma.csv"), "--config",
                       CONFIG, "--db", db)
    assert "Windows-1252, comma-separated, 2 entries" in out
    assert "2 added, 0 updated, 0 unchanged, 10 removed" in out


def test_import_of_a_bad_file_prints_one_line_per_problem_and_exits_1(capsys, tmp_path) -> None:
    bad = FILES / "bad_rows.csv"
    code, out, err = run(capsys, "directory", "import", str(bad), "--config", CONFIG,
                         "--db", str(tmp_path / "ivr.db"))
    lines = out.splitlines()
    assert code == 1 and len(lines) == len(EXPECTED_PROBLEMS)
    assert lines[0] == f"{bad}:3: namn: missing: every entry needs a name"
    assert lines[8].startswith(f"{bad}:8: 11 cells but the header has 10 columns")
    assert "10 problems in" in err and "(read as UTF-8, semicolon-separated); nothing imported" in err


def test_search_and_list(capsys, tmp_path) -> None:
    db = str(tmp_path / "ivr.db")
    run(capsys, "directory", "import", str(FILES / "good_sv_semicolon.csv"), "--config", CONFIG, "--db", db)
    code, out, _ = run(capsys, "directory", "search", "bygglof", "--config", CONFIG, "--db", db)
    assert code == 0 and out.splitlines()[0].split()[1] == "Bygglovsenheten"
    code, out, _ = run(capsys, "directory", "search", "asa oberg", "--json", "--limit", "1",
                       "--config", CONFIG, "--db", db)
    (hit,) = json.loads(out)
    assert (hit["id"], hit["field"], hit["score"]) == ("1001", "name", 100.0)
    code, out, err = run(capsys, "directory", "list", "--config", CONFIG, "--db", db)
    names = [line.split(None, 2)[2] for line in out.splitlines()]
    assert names[0].startswith("Bygglovsenheten") and err.strip() == "10 entries"
    people = [n.split("  ")[0] for n in names[4:]]
    assert people == ["Erik Lund", "Johan Åkesson", "Maria Svensson", "Ola Öberg", "Åsa Berg", "Åsa Öberg"]


def test_search_without_a_log_is_a_usage_error(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "directory", "search", "x", "--config", CONFIG,
                       "--db", str(tmp_path / "no.db"))
    assert code == 2 and "no event log there" in err
    code, _, err = run(capsys, "directory", "import", str(tmp_path / "none.csv"), "--config", CONFIG)
    assert code == 2 and "none.csv: no such file" in err
