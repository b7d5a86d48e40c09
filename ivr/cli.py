"""The ``ivr`` command: check, simulate and test call flows (more verbs join as they exist).

Exit codes: 0 success, 1 the thing checked is wrong (a flow problem, a failed
scenario), 2 the command could not run (bad arguments, bad config).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

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
