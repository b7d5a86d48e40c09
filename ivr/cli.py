"""The ``ivr`` command: check, simulate and test call flows (more verbs join as they exist).

Exit codes: 0 success, 1 the thing checked is wrong (a flow problem, a failed
scenario), 2 the command could not run (bad arguments, bad config).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ivr import __version__
from ivr.announcements import AnnouncementBoard
from ivr.config import ConfigError, Settings, default_config_path, load_settings
from ivr.flow import FlowError
from ivr.flowcheck import FlowContext, check_flow_file, load_flow
from ivr.privacy import PrivacyError, resolve_hash_key
from ivr.scenarios import local_time, run_file, scenario_files
from ivr.simulate import KeysError, SimResult, parse_keys, simulate_call
from ivr.store import EventLog, StoreError


class UsageError(Exception):
    pass


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or default_config_path()
    db = getattr(args, "db", None)
    overrides = {"store.path": str(Path(db).resolve())} if db else None
    return load_settings(path, overrides=overrides)


def _flow_files(paths: Sequence[str], settings: Settings) -> list[Path]:
    if not paths:
        paths = [str(settings.flows_dir)]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("*.toml")))
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    if not files:
        raise UsageError(f"no flow files (*.toml) in {', '.join(paths)}")
    return files


# ---------------------------------------------------------------------------- check


def cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    ctx = FlowContext.from_settings(settings)
    files = _flow_files(args.paths, settings)
    problems = 0
    nodes = 0
    for file in files:
        flow, found = check_flow_file(file, ctx)
        for problem in found:
            print(problem)
        problems += len(found)
        nodes += len(flow.nodes) if flow else 0
    if problems:
        print(f"{problems} problem{'s' if problems != 1 else ''} in {len(files)} "
              f"flow file{'s' if len(files) != 1 else ''}", file=sys.stderr)
        return 1
    print(f"ok: {len(files)} flow file{'s' if len(files) != 1 else ''}, {nodes} nodes, no problems")
    return 0


# ---------------------------------------------------------------------------- simulate


def cmd_simulate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    flow = load_flow(args.flow, FlowContext.from_settings(settings))
    at = local_time(args.at, "--at")
    keys = parse_keys(args.keys)
    board = AnnouncementBoard.from_settings(settings.announcements)
    for slot in args.announce or []:
        if slot not in board:
            raise UsageError(f'--announce: unknown announcement slot "{slot}"')
        board.set(slot, True)
    log = None
    if args.db:
        key = resolve_hash_key(settings.privacy.hash_key, env_name=settings.privacy.hash_key_env,
                               demo=args.demo)
        log = EventLog.open(settings.store.path, hash_key=key)
    try:
        result = simulate_call(
            flow, at=at, caller=args.caller, called=args.called, keys=keys,
            schedules=settings.hours, announcements=board, queue_result=args.queue_result,
            on_trace=(lambda cid, trace: log.append_many(cid, trace)) if log else None)
    finally:
        if log is not None:
            log.close()
    if args.json:
        print(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        print_call(result, flow.name)
        if log is not None:
            print(f"recorded as call {result.call_id} in {settings.store.path}")
    return 0


def print_call(result: SimResult, flow_name: str) -> None:
    print(f"{flow_name}: call {result.call_id[:8]}")
    for event, commands in result.turns:
        name = type(event).__name__
        detail = getattr(event, "digits", None) or getattr(event, "outcome", None) or ""
        print(f"  <- {name}{' ' + detail if detail else ''}")
        for cmd in commands:
            print(f"  -> {describe(cmd)}")
    print(f"path: {' > '.join(result.path)}")
    print(f"end: {result.end}   language: {result.language}"
          + (f"   attributes: {result.attributes}" if result.attributes else ""))


def describe(cmd: object) -> str:
    name = type(cmd).__name__
    prompts = getattr(cmd, "prompts", None) or ([cmd.prompt] if hasattr(cmd, "prompt") else [])
    text = " / ".join(f'"{p.text}"' for p in prompts)
    rest = {k: getattr(cmd, k) for k in ("queue", "category", "priority", "target", "max_digits")
            if getattr(cmd, k, None) not in (None, "")}
    extra = " ".join(f"{k}={v}" for k, v in rest.items())
    return " ".join(x for x in (name, extra, text) if x)


# ---------------------------------------------------------------------------- test-flows


def cmd_test_flows(args: argparse.Namespace) -> int:
    settings = _settings(args)
    root = Path(args.dir) if args.dir else settings.flows_dir / "scenarios"
    if not root.exists():
        raise UsageError(f"{root}: no such directory")
    files = scenario_files([root])
    if not files:
        raise UsageError(f"no scenario files (*.toml) in {root}")
    passed = failed = 0
    for file in files:
        for outcome in run_file(file, settings):
            if outcome.passed:
                passed += 1
                if args.verbose:
                    print(f"PASS {outcome.file}: {outcome.name}")
            else:
                failed += 1
                print(f"FAIL {outcome.file}: {outcome.name}")
                for line in outcome.differences:
                    print(f"  {line}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- report


def _date(value: str, flag: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f'{flag}: expected a date like 2026-12-01, got "{value}"') from None


def _existing_db(settings: Settings) -> Path:
    path = settings.store.path
    if not path.exists():
        raise UsageError(f"{path}: no event log there (run `ivr simulate-load` or `ivr serve` first)")
    return path


def cmd_report(args: argparse.Namespace) -> int:
    from ivr import metrics, report

    date_from, date_to = _date(args.date_from, "--from"), _date(args.date_to, "--to")
    if date_to < date_from:
        raise UsageError("--to: before --from")
    settings = _settings(args)
    db = _existing_db(settings)
    kpi = settings.kpi
    result = metrics.compute(
        db, date_from, date_to, queue=args.queue, service_level_s=kpi.service_level_s,
        short_abandon_s=kpi.short_abandon_s, abandons_in_service_level=kpi.abandons_in_service_level,
        repeat_window_days=settings.privacy.repeat_window_days, as_of=datetime.now(UTC),
        misroute_window_s=settings.transfers.misroute_window_s)
    text = report.render(result, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_staffing(args: argparse.Namespace) -> int:
    from ivr import staffing

    share, target_s = staffing.parse_target(args.target)
    if args.date_from or args.date_to:
        if not (args.date_from and args.date_to):
            raise UsageError("--from and --to go together")
        settings = _settings(args)
        rows = staffing.staffing_from_log(
            _existing_db(settings), _date(args.date_from, "--from"), _date(args.date_to, "--to"),
            share, target_s, queue=args.queue)
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            print(f"{'hour':>5} {'calls/h':>8} {'AHT s':>6} {'agents':>6} {'SL':>6} {'ASA s':>6}")
            for r in rows:
                print(f"{r['hour']:>5} {r['calls_per_hour']:>8.1f} {r['aht_s']:>6.0f} {r['agents']:>6} "
                      f"{r['service_level']:>6.1%} {r['asa_s']:>6.1f}")
        return 0
    if args.calls_per_hour is None or args.aht_s is None:
        raise UsageError("give --calls-per-hour and --aht-s, or --from and --to to use the log")
    result = staffing.agents_needed(args.calls_per_hour, args.aht_s, share, target_s)
    if args.json:
        print(json.dumps(staffing.as_json(result), ensure_ascii=False))
    else:
        print(f"{result.agents} agents for {args.calls_per_hour:g} calls/h, AHT {args.aht_s:g} s: "
              f"service level {result.service_level:.1%} within {target_s:g} s, "
              f"ASA {result.asa_s:.1f} s, occupancy {result.occupancy:.0%}")
    return 0


# ---------------------------------------------------------------------------- retention


def _messages_dir(settings: Settings) -> Path:
    return settings.store.path.parent / "messages"


def cmd_purge(args: argparse.Namespace) -> int:
    from ivr.retention import purge

    settings = _settings(args)
    p = settings.privacy
    for line in purge(_existing_db(settings), now=datetime.now(UTC), raw_number_days=p.raw_number_days,
                      note_days=p.note_days, recording_days=p.recording_days,
                      messages_dir=_messages_dir(settings)):
        print(line)
    return 0


def cmd_forget(args: argparse.Namespace) -> int:
    from ivr.retention import forget

    settings = _settings(args)
    key = resolve_hash_key(settings.privacy.hash_key, env_name=settings.privacy.hash_key_env, demo=args.demo)
    db, now = _existing_db(settings), datetime.now(UTC)
    for line in forget(db, args.caller, key=key, now=now, messages_dir=_messages_dir(settings)):
        print(line)
    for line in forget_at_twilio(settings, db, args.caller, key=key, now=now):
        print(line)
    return 0


def forget_at_twilio(settings: Any, db: Path, number: str, *, key: bytes, now: datetime,
                     http_client: Any = None, sleep: Any = None) -> list[str]:
    """The caller's recordings still at Twilio (a download that never succeeded), deleted
    there with the account's REST credentials; what happened, as lines for the operator."""
    import asyncio

    from ivr.retention import record_forgotten_at_twilio, twilio_recordings_of
    from ivr.transports.twilio_rest import Rest

    sids = twilio_recordings_of(db, number, key=key)
    if not sids:
        return []
    t = settings.twilio
    if not (t.account_sid and t.auth_token):
        return [f"twilio_recordings: {len(sids)} not deleted at Twilio (TWILIO_ACCOUNT_SID and "
                "TWILIO_AUTH_TOKEN are not set); the daily purge of `ivr serve` deletes them there "
                "after recording_days"]

    async def delete_all() -> list[str]:
        rest = Rest(t.account_sid, t.auth_token, retries=t.rest_retries, http_client=http_client,
                    **({"sleep": sleep} if sleep is not None else {}))
        try:
            return [sid for sid in sids if not await rest.delete_recording(sid)]
        finally:
            await rest.close()

    failed = asyncio.run(delete_all())
    lines = [str(record_forgotten_at_twilio(db, now=now, deleted=len(sids) - len(failed)))]
    if failed:
        lines.append(f"twilio_recordings: could not delete {', '.join(failed)} at Twilio; "
                     "run `ivr forget` again later")
    return lines


# ---------------------------------------------------------------------------- simulate-load


def cmd_simulate_load(args: argparse.Namespace) -> int:
    from ivr.loadsim import LoadSimulation, Profile

    settings = _settings(args)
    flow_path = Path(args.flow) if args.flow else settings.flows_dir / "switchboard.toml"
    flow = load_flow(flow_path, FlowContext.from_settings(settings))
    overrides = {"calls_per_day": args.calls_per_day} if args.calls_per_day else {}
    profile = Profile.from_file(Path(args.profile), **overrides) if args.profile else Profile(**overrides)
    key = resolve_hash_key(settings.privacy.hash_key, env_name=settings.privacy.hash_key_env, demo=args.demo)
    log = EventLog.open(settings.store.path, hash_key=key)
    if log.call(f"sim{args.seed}-0000001") is not None:
        log.close()
        raise UsageError(f"{settings.store.path} already holds simulated calls with seed {args.seed}; "
                         "use another --seed or another --db")
    try:
        sim = LoadSimulation(settings, flow, log, profile, seed=args.seed, agents=args.agents,
                             start=_date(args.date_from, "--from"), progress=not args.quiet)
        calls = sim.run(args.days)
    finally:
        log.close()
    print(f"simulated {calls} calls over {args.days} day{'s' if args.days != 1 else ''} "
          f"into {settings.store.path}")
    return 0


# ---------------------------------------------------------------------------- serve


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from aiohttp import web

    from ivr.server import Runtime, is_loopback, make_app, setups_for

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {}
    if args.host:
        overrides["server.host"] = args.host
    if args.port:
        overrides["server.port"] = args.port
    if args.db:
        overrides["store.path"] = str(Path(args.db).resolve())
    settings = load_settings(args.config or default_config_path(), overrides=overrides or None)
    if args.demo and not is_loopback(settings.server.host):
        raise UsageError("--demo runs without webhook signatures and only on loopback "
                         f"(127.0.0.1 or ::1), not on {settings.server.host}")
    key = resolve_hash_key(settings.privacy.hash_key, env_name=settings.privacy.hash_key_env, demo=args.demo)
    log = EventLog.open(settings.store.path, hash_key=key, writer=settings.store.writer)
    runtime = Runtime(settings, sink=log)
    app = make_app(runtime, setups=setups_for(settings, demo=args.demo))
    print(f"ivr {__version__} serving on http://{settings.server.host}:{settings.server.port} "
          f"(flow: {runtime.flow.name}; log: {settings.store.path})", flush=True)
    # aiohttp's access log writes a line per webhook at INFO: off unless asked for (it costs
    # throughput, and request lines are operational data nobody reads by default).
    web.run_app(app, host=settings.server.host, port=settings.server.port, print=None,
                access_log=logging.getLogger("aiohttp.access") if args.access_log else None)
    return 0


# ---------------------------------------------------------------------------- users and prompts


def cmd_passwd(args: argparse.Namespace) -> int:
    import getpass

    from argon2 import PasswordHasher

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    if len(password) < 8:
        raise UsageError("a password needs at least 8 characters")
    print(PasswordHasher().hash(password))
    return 0


def cmd_prompts(args: argparse.Namespace) -> int:
    from ivr import prompts

    settings = _settings(args)
    flow_path = Path(args.flow) if args.flow else settings.flows_dir / "switchboard.toml"
    return prompts.main(flow_path, settings)


# ---------------------------------------------------------------------------- directory


def _problem_line(path: Path, problem: object) -> str:
    line, column, message = problem  # type: ignore[misc]
    where = f"{path}:{line}:" if line else f"{path}:"
    return f"{where} {column}: {message}" if column else f"{where} {message}"


def cmd_directory_import(args: argparse.Namespace) -> int:
    from ivr.directory import DELIMITERS, Directory, DirectoryImportError

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    settings = _settings(args)
    with Directory(settings.store.path) as directory:
        try:
            result = directory.import_csv(path, dry_run=args.dry_run)
        except DirectoryImportError as e:
            for problem in e.problems:
                print(_problem_line(path, problem))
            read = f" (read as {e.encoding}, {DELIMITERS[e.delimiter]}-separated)" if e.delimiter else ""
            print(f"{len(e.problems)} problem{'s' if len(e.problems) != 1 else ''} in {path}{read}; "
                  f"nothing imported", file=sys.stderr)
            return 1
    print(f"{path}: {result.encoding}, {DELIMITERS[result.delimiter]}-separated, {result.entries} entries")
    if result.ignored_columns:
        print(f"ignored columns: {', '.join(result.ignored_columns)}")
    kept = f"; {result.kept_status} kept the status a supervisor set" if result.kept_status else ""
    where = " (--dry-run: nothing written)" if result.dry_run else f" in {settings.store.path}"
    print(f"{result.added} added, {result.updated} updated, {result.unchanged} unchanged, "
          f"{result.removed} removed{kept}{where}")
    return 0


def _entry_line(entry: object, now: datetime) -> str:
    e = entry  # an ivr.directory.Entry
    reach = " ".join(x for x in (e.phone, f"ankn. {e.extension}" if e.extension else None) if x)
    status = e.status_at(now)
    note = f" ({e.status_note})" if e.status_note and status != "available" else ""
    return f"{e.name:<30} {e.title or '':<24} {e.unit or '':<30} {reach:<26} {status}{note}"


def cmd_directory_search(args: argparse.Namespace) -> int:
    from ivr.directory import Directory

    settings = _settings(args)
    with Directory(_existing_db(settings)) as directory:
        hits = directory.search(args.query, limit=args.limit)
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([{**h.entry.as_json(), "score": h.score, "matched": h.matched, "field": h.field}
                          for h in hits], ensure_ascii=False))
        return 0
    for h in hits:
        print(f"{h.score:5.1f}  {_entry_line(h.entry, now)}   [{h.field}: {h.matched}]")
    if not hits:
        print(f'nothing found for "{args.query}"', file=sys.stderr)
    return 0


def cmd_directory_list(args: argparse.Namespace) -> int:
    from ivr.directory import Directory

    settings = _settings(args)
    with Directory(_existing_db(settings)) as directory:
        entries = directory.all()
    if args.json:
        print(json.dumps([e.as_json() for e in entries], ensure_ascii=False))
        return 0
    now = datetime.now(UTC)
    for e in entries:
        print(f"{e.id:<12} {e.kind:<6} {_entry_line(e, now)}")
    print(f"{len(entries)} entr{'ies' if len(entries) != 1 else 'y'}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="config file (default: ./config.toml)")
    parser = argparse.ArgumentParser(
        prog="ivr", description="Contact-center controller for Swedish municipalities.")
    parser.add_argument("--version", action="version", version=f"ivr {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", parents=[common], help="check call-flow files")
    p.add_argument("paths", nargs="*", help="flow files or directories (default: callflows/)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("simulate", parents=[common], help="run one simulated call through a flow")
    p.add_argument("flow", help="the flow file")
    p.add_argument("--at", required=True, help="local time of the call, e.g. 2026-12-01T09:30")
    p.add_argument("--caller", help="the calling number, e.g. +46701234567")
    p.add_argument("--called", help="the number called")
    p.add_argument("--keys", default="", help='keys in order: "2,1,4711#"; t = timeout, h = hang up')
    p.add_argument("--announce", action="append", metavar="SLOT",
                   help="switch an announcement slot on for this call (repeatable)")
    p.add_argument("--queue-result", choices=["answered", "overflow", "closed", "callback"],
                   help="play on past the queue as if this happened there")
    p.add_argument("--json", action="store_true", help="print the path and end as JSON")
    p.add_argument("--db", help="record the call in this event log (SQLite)")
    p.add_argument("--demo", action="store_true",
                   help="allow the built-in demo hash key when IVR_HASH_KEY is not set")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("test-flows", parents=[common], help="run scenario files against flows")
    p.add_argument("dir", nargs="?", help="scenario directory (default: callflows/scenarios)")
    p.add_argument("-v", "--verbose", action="store_true", help="list passing scenarios too")
    p.set_defaults(func=cmd_test_flows)

    p = sub.add_parser("serve", parents=[common], help="run the contact center (HTTP, Twilio, Asterisk)")
    p.add_argument("--host", help="listen address (default: server.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: server.port, 8080)")
    p.add_argument("--db", help="the event log (default: store.path in config.toml)")
    p.add_argument("--demo", action="store_true",
                   help="loopback only: demo hash key if IVR_HASH_KEY is unset, webhooks unsigned")
    p.add_argument("--access-log", action="store_true", help="log every HTTP request (off by default)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("passwd", help="print an argon2 hash of a password for [users.NAME]")
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(func=cmd_passwd)

    p = sub.add_parser("prompts", parents=[common], help="render missing prompt audio with espeak-ng")
    p.add_argument("flow", nargs="?", help="flow file (default: callflows/switchboard.toml)")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("report", parents=[common], help="KPIs and first-contact resolution from the log")
    p.add_argument("--db", help="the event log (default: store.path in config.toml)")
    p.add_argument("--from", dest="date_from", required=True, help="first day, e.g. 2026-12-01")
    p.add_argument("--to", dest="date_to", required=True, help="last day (inclusive)")
    p.add_argument("--queue", help="one queue only")
    p.add_argument("--format", choices=["table", "csv", "json", "html"], default="table")
    p.add_argument("--output", "-o", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("staffing", parents=[common], help="agents needed per hour (Erlang C)")
    p.add_argument("--calls-per-hour", type=float)
    p.add_argument("--aht-s", type=float, help="average handle time in seconds")
    p.add_argument("--target", default="80/60", help="service level target SHARE/SECONDS (default 80/60)")
    p.add_argument("--db", help="the event log, with --from/--to")
    p.add_argument("--from", dest="date_from", help="measure arrivals and handle times from the log")
    p.add_argument("--to", dest="date_to")
    p.add_argument("--queue", help="one queue only (with --from/--to)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_staffing)

    p = sub.add_parser("purge", parents=[common], help="delete personal data past its retention")
    p.add_argument("--db", help="the event log (default: store.path in config.toml)")
    p.set_defaults(func=cmd_purge)

    p = sub.add_parser("forget", parents=[common], help="erase one caller's personal data (GDPR)")
    p.add_argument("--caller", required=True, help="the caller's number")
    p.add_argument("--db", help="the event log (default: store.path in config.toml)")
    p.add_argument("--demo", action="store_true", help="the log was written with the demo hash key")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("simulate-load", parents=[common], help="simulate days of calls into the log")
    p.add_argument("--db", help="the event log to write (default: store.path in config.toml)")
    p.add_argument("--from", dest="date_from", required=True, help="first simulated day")
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--calls-per-day", type=int, help="weekday calls (default 400)")
    p.add_argument("--agents", type=int, help="agents with every skill (default: [agents] in config)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--profile", help="TOML file with caller and agent behaviour (see docs)")
    p.add_argument("--flow", help="flow file (default: callflows/switchboard.toml)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--demo", action="store_true", help="use the demo hash key if IVR_HASH_KEY is unset")
    p.set_defaults(func=cmd_simulate_load)

    p = sub.add_parser("directory", help="the staff directory: import a CSV file, search, list")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = actions.add_parser("import", parents=[common], help="import people and units from a CSV file")
    q.add_argument("file", help="CSV as an HR or directory export gives it (see docs/directory.md)")
    q.add_argument("--db", help="the event log (default: store.path in config.toml)")
    q.add_argument("--dry-run", action="store_true", help="check and count only; write nothing")
    q.set_defaults(func=cmd_directory_import)
    q = actions.add_parser("search", parents=[common], help="search by name, unit, title or topic")
    q.add_argument("query")
    q.add_argument("--limit", type=int, default=10)
    q.add_argument("--db", help="the event log (default: store.path in config.toml)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_directory_search)
    q = actions.add_parser("list", parents=[common], help="every entry, units first")
    q.add_argument("--db", help="the event log (default: store.path in config.toml)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_directory_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, FlowError) as exc:
        print(exc, file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    except (UsageError, KeysError, ValueError, PrivacyError, StoreError) as exc:
        print(f"ivr {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
