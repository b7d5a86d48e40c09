"""The measuring commands end to end: simulate-load -> report, staffing, purge."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from ivr.cli import main

from .conftest import ROOT

CONFIG = str(ROOT / "config.toml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def week_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("week") / "ivr.db"
    code = main(["simulate-load", "--config", CONFIG, "--db", str(db), "--from", "2026-12-07",
                 "--days", "2", "--calls-per-day", "120", "--seed", "5", "--demo", "--quiet"])
    assert code == 0
    return db


def test_simulate_load_without_a_key_refuses(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("IVR_HASH_KEY", raising=False)
    code, _, err = run(capsys, "simulate-load", "--config", CONFIG, "--db", str(tmp_path / "x.db"),
                       "--from", "2026-12-07", "--quiet")
    assert code == 2 and "IVR_HASH_KEY is not set" in err


def test_report_json_has_the_kpi_names_overall_and_per_queue(capsys, week_db) -> None:
    code, out, _ = run(capsys, "report", "--config", CONFIG, "--db", str(week_db), "--from", "2026-12-07",
                       "--to", "2026-12-08", "--format", "json")
    assert code == 0
    data = json.loads(out)
    keys = {"offered", "answered", "abandoned", "short_abandoned", "service_level", "asa_s", "aht_s",
            "fcr_coded", "fcr_repeat", "fcr_survey"}
    assert keys <= set(data)
    assert data["answered"] > 0 and 0 <= data["service_level"] <= 1
    assert data["by_queue"] and all(keys <= set(q) for q in data["by_queue"].values())
    assert sum(q["answered"] for q in data["by_queue"].values()) == data["answered"]


def test_report_csv_and_html_render(capsys, week_db, tmp_path) -> None:
    code, out, _ = run(capsys, "report", "--config", CONFIG, "--db", str(week_db), "--from", "2026-12-07",
                       "--to", "2026-12-08", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and rows and "service_level" in rows[0]
    html = tmp_path / "r.html"
    code, out, _ = run(capsys, "report", "--config", CONFIG, "--db", str(week_db), "--from", "2026-12-07",
                       "--to", "2026-12-08", "--format", "html", "-o", str(html))
    text = html.read_text(encoding="utf-8")
    assert code == 0 and text.count("<svg") >= 3 and "http://" not in text and "https://" not in text


def test_report_rejects_bad_dates_and_a_missing_log(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "report", "--config", CONFIG, "--db", str(tmp_path / "none.db"),
                       "--from", "2026-12-01", "--to", "2026-12-02")
    assert code == 2 and "no event log there" in err
    code, _, err = run(capsys, "report", "--config", CONFIG, "--db", str(tmp_path / "none.db"),
                       "--from", "1 dec", "--to", "2026-12-02")
    assert code == 2 and 'expected a date like 2026-12-01, got "1 dec"' in err


def test_staffing_from_figures_json(capsys) -> None:
    code, out, _ = run(capsys, "staffing", "--calls-per-hour", "200", "--aht-s", "180", "--target", "80/20",
                       "--json")
    data = json.loads(out)
    assert code == 0 and data["agents"] == 14  # Call Centre Helper's worked example
    assert data["service_level"] == pytest.approx(0.8884, abs=1e-4)


def test_staffing_from_the_log_gives_one_row_per_hour(capsys, week_db) -> None:
    code, out, _ = run(capsys, "staffing", "--config", CONFIG, "--db", str(week_db), "--from", "2026-12-07",
                       "--to", "2026-12-08", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 24
    busiest = max(rows, key=lambda r: r["calls_per_hour"])
    assert 8 <= busiest["hour"] <= 14 and busiest["agents"] >= 1


def test_staffing_needs_figures_or_a_period(capsys) -> None:
    code, _, err = run(capsys, "staffing", "--calls-per-hour", "20")
    assert code == 2 and "give --calls-per-hour and --aht-s" in err


def test_simulate_load_refuses_to_write_the_same_seed_twice(capsys, week_db) -> None:
    code, _, err = run(capsys, "simulate-load", "--config", CONFIG, "--db", str(week_db), "--from",
                       "2026-12-07", "--seed", "5", "--demo", "--quiet")
    assert code == 2 and "already holds simulated calls with seed 5" in err
