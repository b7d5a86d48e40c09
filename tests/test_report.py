"""Rendering: JSON and CSV carry exactly the KPI names; the HTML report stands alone."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import sqlite_utils

from ivr.metrics import KPI_NAMES, SCOPES, TRANSFER_NAMES, compute
from ivr.report import render
from ivr.store import migrate

from .test_metrics import DAY, LATER, answered, insert, local, ten_calls


@pytest.fixture
def result(tmp_path: Path) -> dict:
    path = tmp_path / "log.db"
    with sqlite_utils.Database(path) as db:
        migrate(db)
    rows = ten_calls()
    rows.append(answered(11, local(DAY + timedelta(days=1), 10), 70, 90, 10, queue="växeln",
                         category="överförmyndare", caller_hash="h9", survey="no"))  # fmt: skip
    insert(path, rows)
    return compute(path, DAY, DAY + timedelta(days=2), as_of=LATER)


def test_json_keys_are_the_kpi_names(result: dict) -> None:
    text = render(result, "json")
    data = json.loads(text)
    assert list(data) == [*KPI_NAMES, *SCOPES, "messages", "agent_transfers", "parameters"]
    for scope in SCOPES:
        assert all(list(kpis) == list(KPI_NAMES) for kpis in data[scope].values())
    assert "växeln" in text and "\\u" not in text  # ensure_ascii=False
    assert data["by_hour"]["9"]["calls"] == 5 and data["service_level"] == result["service_level"]
    assert data["fcr_coded"] == result["fcr_coded"] and data["asa_s"] == result["asa_s"]


def test_csv_has_one_row_per_scope_and_the_kpi_names_as_header(result: dict) -> None:
    rows = list(csv.reader(io.StringIO(render(result, "csv"))))
    assert rows[0] == ["scope", "key", *KPI_NAMES, *(f"xfer_{n}" for n in TRANSFER_NAMES)]
    scopes = [(r[0], r[1]) for r in rows[1:]]
    assert scopes[0] == ("total", "")
    assert [k for s, k in scopes if s == "by_queue"] == ["A", "B", "växeln", "(none)"]
    assert [k for s, k in scopes if s == "by_hour"] == [str(h) for h in range(24)]
    assert [k for s, k in scopes if s == "by_day"] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert {k for s, k in scopes if s == "by_category"} == {"x", "y", "överförmyndare", "(none)"}
    total = dict(zip(rows[0], rows[1], strict=True))
    assert (total["calls"], total["service_level"], total["occupancy"]) == (
        "11", str(result["service_level"]), "")  # fmt: skip
    empty_day = dict(zip(rows[0], [r for r in rows if r[:2] == ["by_day", "2026-03-04"]][0],
                         strict=True))  # fmt: skip
    assert (empty_day["calls"], empty_day["service_level"]) == ("0", "")  # no figure, not 0


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.svgs: list[list[dict]] = []  # per <svg>: the attributes of its shapes
        self.tags: list[tuple[str, dict]] = []
        self.title = ""

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "svg":
            self.svgs.append([])
        elif self.svgs and "svg" in self.stack:
            self.svgs[-1].append({"tag": tag, **attributes})
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "title" and "head" in self.stack:
            self.title += data


def bars(svg: list[dict], kind: str = "bar") -> list[dict]:
    return [s for s in svg if s["tag"] == "rect" and kind in s.get("class", "").split()]


def test_html_is_one_self_contained_file_with_three_charts(result: dict) -> None:
    text = render(result, "html", service_level_goal=0.8)
    page = Collector()
    page.feed(text)
    page.close()
    assert page.title.startswith("Samtalsrapport / Call report 2026-03-02")
    assert not re.search(r"https?://", text), "nothing may be fetched from the internet"
    assert not [t for t, a in page.tags if t in ("script", "link", "img", "iframe")]
    assert not [a for _, a in page.tags if "src" in a or "href" in a]
    hours, levels, fcr = page.svgs  # calls per hour, service level per day, FCR by category
    heights = {round(float(b["height"]), 1) for b in bars(hours)}
    assert len(bars(hours)) == 24 and len(heights) == 3  # 0, 5 calls (9 and 14) and 1 (10)
    tallest = [b for b in bars(hours) if float(b["height"]) == max(float(x["height"]) for x in bars(hours))]
    assert len(tallest) == 2
    assert len(bars(levels)) == 2  # 2 March and 3 March; 4 March had no calls: no bar
    assert [s for s in levels if s["tag"] == "line" and s.get("class") == "goal"]
    # categories x, y, överförmyndare; x has all three measures, y no survey answer, the
    # last one no coding and a repeat window that has closed
    assert [len(bars(fcr, m)) for m in ("fcr_coded", "fcr_repeat", "fcr_survey")] == [1, 3, 2]
    assert all(a.get("role") == "img" and a.get("aria-label") for t, a in page.tags if t == "svg")
    assert sum(t == "table" for t, _ in page.tags) >= 6  # a table behind every chart, and more
    assert "överförmyndare" in text and "&lt;" not in page.title


def test_html_escapes_names_from_the_log(result: dict) -> None:
    result["by_queue"]["<script>alert(1)</script>"] = result["by_queue"].pop("A")
    text = render(result, "html")
    assert "<script>" not in text and "&lt;script&gt;" in text


def test_the_service_level_of_a_year_is_a_line(result: dict) -> None:
    days = {f"2026-{m:02d}-{d:02d}": dict(result["by_day"]["2026-03-02"])
            for m in range(1, 13) for d in range(1, 29)}  # fmt: skip
    page = Collector()
    page.feed(render({**result, "by_day": days}, "html"))
    levels = page.svgs[1]
    assert not bars(levels) and len([s for s in levels if s["tag"] == "polyline"]) == 1


def test_table_lists_every_kpi_with_its_label(result: dict) -> None:
    text = render(result, "table")
    assert text.splitlines()[0].startswith("Samtalsrapport / Call report 2026-03-02 – 2026-03-04")
    for label in ("Servicenivå / Service level", "Löst enligt kodning / FCR, agent-coded",
                  "Beläggning / Occupancy"):  # fmt: skip
        assert label in text
    grid = text.split("Per kö / By queue\n")[1].split("\n\n")[0].splitlines()
    assert len({len(line.rstrip()) for line in grid[:2]}) == 1  # header and rule line up
    sl = next(line for line in grid if line.startswith("Servicenivå"))
    assert f"{result['service_level'] * 100:.1f} %" in sl and "–" in sl  # queue "(none)"


def test_an_unknown_format_is_refused(result: dict) -> None:
    with pytest.raises(ValueError, match="format must be one of table, csv, json, html"):
        render(result, "pdf")
