"""Scenario files: a municipality tests its menu like code before publishing it.

``callflows/scenarios/*.toml``::

    flow = "../switchboard.toml"          # relative to the scenario file

    [[scenario]]
    name = "Key 1 in office hours reaches barn och utbildning"
    at = 2026-12-01T09:30:00               # local time (Europe/Stockholm)
    caller = "+46701234567"
    keys = ["1"]                           # or "1,t,h"
    announcements = ["driftstorning"]      # slots switched on for this call (optional)
    queue_result = "answered"              # play on past the queue (optional)
    expect_end = "queue:barn-utbildning"
    expect_path = ["greeting", "disturbance", "opening", "main_menu", "barn"]  # optional
    expect_language = "sv"                 # optional
    expect_attributes = { case_number = "4711" }  # optional
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from ivr.announcements import AnnouncementBoard
from ivr.flow import FlowError, suggest
from ivr.flowcheck import FlowContext, load_flow
from ivr.simulate import KeysError, parse_keys, simulate_call

STOCKHOLM = ZoneInfo("Europe/Stockholm")
FIELDS = ("name", "at", "caller", "called", "keys", "announcements", "queue_result",
          "expect_end", "expect_path", "expect_language", "expect_attributes")


@dataclass
class Outcome:
    file: str
    name: str
    differences: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.differences


def local_time(value: Any, where: str) -> datetime:
    """A TOML or ISO datetime; naive values are Swedish local time."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f'{where}: expected a date and time like 2026-12-01T09:30, '
                             f'got "{value}"') from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time(12))
    if not isinstance(value, datetime):
        raise ValueError(f"{where}: expected a date and time like 2026-12-01T09:30, got {value!r}")
    return value if value.tzinfo else value.replace(tzinfo=STOCKHOLM)


def run_file(path: Path, settings: Any) -> list[Outcome]:
    file = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return [Outcome(file, "(file)", [f"cannot read: {exc}"])]
    flow_ref = raw.get("flow")
    if not isinstance(flow_ref, str):
        return [Outcome(file, "(file)", ['flow: required, the flow file this scenario tests'])]
    try:
        flow = load_flow(path.parent / flow_ref, FlowContext.from_settings(settings))
    except FlowError as exc:
        return [Outcome(file, "(file)", [f"flow does not pass checks:\n{exc}"])]
    scenarios = raw.get("scenario")
    if not isinstance(scenarios, list) or not scenarios:
        return [Outcome(file, "(file)", ["no [[scenario]] tables"])]
    return [run_one(file, i, s, flow, settings) for i, s in enumerate(scenarios, 1)]


def run_one(file: str, index: int, raw: dict[str, Any], flow: Any, settings: Any) -> Outcome:
    name = str(raw.get("name", f"scenario {index}"))
    out = Outcome(file, name)
    for key in raw:
        if key not in FIELDS:
            out.differences.append(f"{key}: unknown field{suggest(key, FIELDS)}")
    if "expect_end" not in raw:
        out.differences.append("expect_end: required")
    try:
        at = local_time(raw.get("at"), "at")
        keys = parse_keys(raw.get("keys"))
    except (ValueError, KeysError) as exc:
        out.differences.append(str(exc))
    if out.differences:
        return out
    board = AnnouncementBoard.from_settings(settings.announcements)
    for slot in raw.get("announcements", []):
        if slot not in board:
            out.differences.append(f'announcements: unknown slot "{slot}"')
            return out
        board.set(slot, True)
    result = simulate_call(flow, at=at, caller=raw.get("caller"), called=raw.get("called"),
                           keys=keys, schedules=settings.hours, announcements=board,
                           queue_result=raw.get("queue_result"))
    if result.end != raw["expect_end"]:
        out.differences.append(f"end: expected {raw['expect_end']}, got {result.end}")
    want_path = raw.get("expect_path")
    if want_path is not None and list(want_path) != result.path:
        diff = difflib.unified_diff(list(want_path), result.path, "expected path", "actual path",
                                    lineterm="", n=1)
        out.differences.append("path differs:\n    " + "\n    ".join(diff))
    want_lang = raw.get("expect_language")
    if want_lang is not None and want_lang != result.language:
        out.differences.append(f"language: expected {want_lang}, got {result.language}")
    for key, value in (raw.get("expect_attributes") or {}).items():
        got = result.attributes.get(key)
        if got != str(value):
            out.differences.append(f"attributes.{key}: expected {value!r}, got {got!r}")
    return out


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        files.extend(sorted(p.glob("*.toml")) if p.is_dir() else [p])
    return files
