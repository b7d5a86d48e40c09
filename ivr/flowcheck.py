"""Checks on a parsed flow as a whole: targets, reachability, loops, prompts, config.

``load_flow`` is the one entry point the rest of the program uses: it parses, runs
every check and either returns a flow that is safe to run or raises
:class:`~ivr.flow.FlowError` listing every problem.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.flow import (
    DEFAULT_INVALID,
    DEFAULT_TIMEOUT,
    KINDS,
    PROMPT_FIELDS,
    Announcement,
    Flow,
    FlowError,
    Hours,
    Input,
    Language,
    Menu,
    Node,
    Problem,
    Queue,
    Survey,
    parse_flow,
    suggest,
)

# Nodes that hand control back to the caller (or end the call): a cycle through one of
# these waits for the caller and is a legitimate loop ("press * to hear again").
WAITING_KINDS = frozenset({"menu", "input", "message", "queue", "transfer", "hangup", "survey"})


@dataclass(frozen=True, slots=True)
class FlowContext:
    """What the flow is checked against: the names config.toml defines."""

    schedules: frozenset[str] | None = None
    queues: Mapping[str, tuple[str, ...]] | None = None  # queue -> categories
    slots: Mapping[str, frozenset[str]] | None = None  # slot -> languages with text
    recordings_dir: Path | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> FlowContext:
        return cls(
            schedules=frozenset(settings.hours),
            queues={name: tuple(q.categories) for name, q in settings.queues.items()},
            slots={name: frozenset(a.text) for name, a in settings.announcements.items()},
            recordings_dir=settings.recordings_dir,
        )


def targets(node: Node) -> Iterator[tuple[str, str]]:
    """(field, target node) pairs for every edge leaving ``node``."""
    for key in KINDS[node.kind][3]:
        target = getattr(node, key, None)
        if target:
            yield key, target
    if isinstance(node, Menu):
        for key, target in node.options.items():
            yield f"options.{key}", target


def check_targets(flow: Flow, file: str) -> list[Problem]:
    out = []
    for node in flow.nodes.values():
        for key, target in targets(node):
            if target not in flow.nodes:
                out.append(Problem(file, node.id, f'{key}: unknown target "{target}"'
                                                  f"{suggest(target, flow.nodes)}"))
    return out


def check_reachable(flow: Flow, file: str) -> list[Problem]:
    if flow.start not in flow.nodes:
        return []
    seen = {flow.start}
    stack = [flow.start]
    while stack:
        for _key, target in targets(flow.nodes[stack.pop()]):
            if target in flow.nodes and target not in seen:
                seen.add(target)
                stack.append(target)
    return [Problem(file, n, f'not reachable from start node "{flow.start}"')
            for n in flow.nodes if n not in seen]


def check_loops(flow: Flow, file: str) -> list[Problem]:
    """Cycles among nodes that never wait for the caller would spin forever."""
    graph = {
        n.id: [t for _k, t in targets(n) if t in flow.nodes and flow.nodes[t].kind not in WAITING_KINDS]
        for n in flow.nodes.values() if n.kind not in WAITING_KINDS
    }
    out: list[Problem] = []
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    for root in graph:
        if state.get(root):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        trail = [root]
        state[root] = 1
        while stack:
            node, edges = stack[-1]
            nxt = next(edges, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                trail.pop()
            elif state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    loop = " -> ".join([*cycle, nxt])
                    out.append(Problem(file, nxt, f"loop that never waits for input: {loop}"))
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(graph[nxt])))
                trail.append(nxt)
    return out


def check_prompts(flow: Flow, file: str) -> list[Problem]:
    out = []
    for node in flow.nodes.values():
        for key in PROMPT_FIELDS:
            prompts = getattr(node, key, None)
            if prompts is None:
                continue
            if key in ("invalid_prompt", "timeout_prompt") and not prompts:
                builtin = DEFAULT_INVALID if key == "invalid_prompt" else DEFAULT_TIMEOUT
                missing = [lang for lang in flow.languages if lang not in builtin]
                if missing:
                    out.append(Problem(file, node.id, f"{key}: no built-in text for "
                                                      f"{', '.join(missing)}; give {key}.LANG"))
                continue
            if not prompts:
                continue
            for lang in flow.languages:
                if lang not in prompts:
                    out.append(Problem(file, node.id, f"{key}: prompt missing for language {lang}"))
    return out


def check_semantics(flow: Flow, file: str) -> list[Problem]:
    out = []
    for node in flow.nodes.values():
        if isinstance(node, Language) and node.language not in flow.languages:
            out.append(Problem(file, node.id, f'language: "{node.language}" is not one of the '
                                              f"flow's languages {list(flow.languages)}"))
        if isinstance(node, Input) and node.min_digits > node.max_digits:
            out.append(Problem(file, node.id, "min_digits: larger than max_digits"))
        if isinstance(node, Menu) and node.repeat_key in node.options:
            out.append(Problem(file, node.id, f'options: key "{node.repeat_key}" is the '
                                              "repeat key; choose another key or repeat_key"))
        if isinstance(node, Survey) and node.yes == node.no:
            out.append(Problem(file, node.id, "yes and no use the same key"))
    return out


def check_context(flow: Flow, file: str, ctx: FlowContext) -> list[Problem]:
    out = []
    for node in flow.nodes.values():
        if isinstance(node, Hours) and ctx.schedules is not None and node.schedule not in ctx.schedules:
            out.append(Problem(file, node.id, f'schedule: unknown schedule "{node.schedule}" '
                                              f"(config.toml has [hours.NAME] for "
                                              f"{', '.join(sorted(ctx.schedules)) or 'none'})"
                                              f"{suggest(node.schedule, ctx.schedules)}"))
        if isinstance(node, Queue) and ctx.queues is not None:
            if node.queue not in ctx.queues:
                out.append(Problem(file, node.id, f'queue: unknown queue "{node.queue}"'
                                                  f"{suggest(node.queue, ctx.queues)}"))
            elif node.category and node.category not in ctx.queues[node.queue]:
                cats = ctx.queues[node.queue]
                out.append(Problem(file, node.id, f'category: "{node.category}" is not a category '
                                                  f'of queue "{node.queue}"{suggest(node.category, cats)}'))
        if isinstance(node, Announcement) and ctx.slots is not None:
            if node.slot not in ctx.slots:
                out.append(Problem(file, node.id, f'slot: unknown announcement slot "{node.slot}"'
                                                  f"{suggest(node.slot, ctx.slots)}"))
            else:
                missing = [lang for lang in flow.languages if lang not in ctx.slots[node.slot]]
                if missing and not node.prompt:
                    out.append(Problem(file, node.id, f'slot: announcement "{node.slot}" has no '
                                                      f"text for {', '.join(missing)} in config.toml"))
    return out


def check_flow_text(text: str, file: str, ctx: FlowContext | None = None,
                    path: Path | None = None) -> tuple[Flow | None, list[Problem]]:
    ctx = ctx or FlowContext()
    flow, problems = parse_flow(text, file, recordings_dir=ctx.recordings_dir, path=path)
    if flow is None:
        return None, problems
    for check in (check_targets, check_reachable, check_loops, check_prompts, check_semantics):
        problems.extend(check(flow, file))
    problems.extend(check_context(flow, file, ctx))
    return flow, problems


def check_flow_file(path: str | Path, ctx: FlowContext | None = None) -> tuple[Flow | None, list[Problem]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), None, f"cannot read: {exc}")]
    return check_flow_text(text, str(path), ctx, path=path)


def load_flow(path: str | Path, ctx: FlowContext | None = None) -> Flow:
    """Load a flow that passed every check, or raise FlowError listing the problems."""
    flow, problems = check_flow_file(path, ctx)
    if problems or flow is None:
        raise FlowError(problems)
    return flow
