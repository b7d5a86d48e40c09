"""The call-flow file format: TOML in, a validated, frozen :class:`Flow` out.

A flow is a set of named nodes, a start node and the languages it speaks. Every check
happens here, at load time, and every problem names the file, the node and the key, so
that ``ivr check`` can print one line per problem. The graph checks (targets,
reachability, loops that never wait) live in :mod:`ivr.flowcheck`.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ivr.vocabulary import Prompt

VALID_KEYS = frozenset("0123456789*#")
LANGUAGE_RE = re.compile(r"^[a-z]{2,3}$")

# Built-in prompts for retries, so a flow need not spell them out for sv and en.
DEFAULT_INVALID = {"sv": "Det valet finns inte.", "en": "That is not a valid choice."}
DEFAULT_TIMEOUT = {"sv": "Jag uppfattade inget val.", "en": "I did not hear a choice."}


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    node: str | None
    message: str

    def __str__(self) -> str:
        where = f"node {self.node}: " if self.node else ""
        return f"{self.file}: {where}{self.message}"


class FlowError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


Prompts = Mapping[str, Prompt]  # language -> prompt


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    kind: str
    prompt: Prompts = field(default_factory=dict)
    next: str | None = None


@dataclass(frozen=True, slots=True)
class Say(Node):
    pass


@dataclass(frozen=True, slots=True)
class Menu(Node):
    options: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 6.0
    retries: int = 2
    invalid_prompt: Prompts = field(default_factory=dict)
    timeout_prompt: Prompts = field(default_factory=dict)
    on_fail: str | None = None
    repeat_key: str = "*"


@dataclass(frozen=True, slots=True)
class Input(Node):
    var: str = "input"
    max_digits: int = 10
    min_digits: int = 1
    finish_on_key: str = "#"
    pattern: str | None = None
    timeout_s: float = 8.0
    retries: int = 2
    invalid_prompt: Prompts = field(default_factory=dict)
    timeout_prompt: Prompts = field(default_factory=dict)
    on_fail: str | None = None
    sensitive: bool = False


@dataclass(frozen=True, slots=True)
class Hours(Node):
    schedule: str = ""
    open: str = ""
    closed: str = ""
    holiday: str | None = None


@dataclass(frozen=True, slots=True)
class Language(Node):
    language: str = ""


@dataclass(frozen=True, slots=True)
class Announcement(Node):
    slot: str = ""


@dataclass(frozen=True, slots=True)
class Queue(Node):
    queue: str = ""
    category: str | None = None
    priority: int = 0
    after: str | None = None
    overflow: str | None = None


@dataclass(frozen=True, slots=True)
class TransferNode(Node):
    target: str = ""
    on_fail: str | None = None


@dataclass(frozen=True, slots=True)
class Message(Node):
    max_length_s: int = 120


@dataclass(frozen=True, slots=True)
class SetNode(Node):
    category: str | None = None
    priority: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HangupNode(Node):
    pass


@dataclass(frozen=True, slots=True)
class Survey(Node):
    yes: str = "1"
    no: str = "2"
    timeout_s: float = 8.0
    thanks: Prompts = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Flow:
    name: str
    start: str
    languages: tuple[str, ...]
    nodes: Mapping[str, Node]
    path: Path | None = None

    @property
    def default_language(self) -> str:
        return self.languages[0]


# --------------------------------------------------------------------------- parsing

COMMON = ("kind", "prompt", "next", "description")
# kind -> (class, extra fields, required fields, target fields, prompt fields)
KINDS: dict[str, tuple[type[Node], tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "say": (Say, (), ("prompt",), ("next",)),
    "menu": (
        Menu,
        ("options", "timeout_s", "retries", "invalid_prompt", "timeout_prompt", "on_fail",
         "repeat_key"),
        ("prompt", "options"),
        ("on_fail",),
    ),
    "input": (
        Input,
        ("var", "max_digits", "min_digits", "finish_on_key", "pattern", "timeout_s", "retries",
         "invalid_prompt", "timeout_prompt", "on_fail", "sensitive"),
        ("prompt", "var", "next"),
        ("next", "on_fail"),
    ),
    "hours": (Hours, ("schedule", "open", "closed", "holiday"), ("schedule", "open", "closed"),
              ("open", "closed", "holiday")),
    "language": (Language, ("language",), ("language", "next"), ("next",)),
    "announcement": (Announcement, ("slot",), ("slot", "next"), ("next",)),
    "queue": (Queue, ("queue", "category", "priority", "after", "overflow"), ("queue",),
              ("after", "overflow")),
    "transfer": (TransferNode, ("target", "on_fail"), ("target",), ("on_fail",)),
    "message": (Message, ("max_length_s",), ("prompt",), ("next",)),
    "set": (SetNode, ("category", "priority", "attributes"), ("next",), ("next",)),
    "hangup": (HangupNode, (), (), ()),
    "survey": (Survey, ("yes", "no", "timeout_s", "thanks"), ("prompt",), ("next",)),
}
PROMPT_FIELDS = ("prompt", "invalid_prompt", "timeout_prompt", "thanks")
# Kinds that end or leave the flow: a `next` makes no sense there.
NO_NEXT = frozenset({"hours", "menu", "queue", "transfer", "hangup"})


def suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Parser:
    def __init__(self, file: str, recordings_dir: Path | None):
        self.file = file
        self.recordings_dir = recordings_dir
        self.problems: list[Problem] = []

    def problem(self, node: str | None, message: str) -> None:
        self.problems.append(Problem(self.file, node, message))

    def prompts(self, node: str, key: str, raw: Any, languages: tuple[str, ...]) -> Prompts:
        if raw is None:
            return MappingProxyType({})
        if isinstance(raw, str):
            if len(languages) > 1:
                self.problem(node, f"{key}: give one text per language "
                                   f"({', '.join(languages)}), e.g. {key}.{languages[0]} = \"...\"")
            return MappingProxyType({languages[0]: Prompt(languages[0], raw)})
        if not isinstance(raw, dict):
            self.problem(node, f"{key}: expected a table of languages, got {type(raw).__name__}")
            return MappingProxyType({})
        out: dict[str, Prompt] = {}
        for lang, value in raw.items():
            if lang not in languages:
                self.problem(node, f"{key}.{lang}: language not declared in `languages`"
                                   f"{suggest(lang, languages)}")
                continue
            if isinstance(value, str):
                out[lang] = Prompt(lang, value)
            elif isinstance(value, dict):
                unknown = set(value) - {"audio", "text"}
                for u in sorted(unknown):
                    self.problem(node, f'{key}.{lang}.{u}: unknown field{suggest(u, ["audio", "text"])}')
                text, audio = value.get("text"), value.get("audio")
                if not isinstance(text, str) or not text.strip():
                    self.problem(node, f"{key}.{lang}: expected {{audio, text}} with the text "
                                       "the recording says")
                    continue
                if audio is not None and not isinstance(audio, str):
                    self.problem(node, f"{key}.{lang}.audio: expected a file path")
                    audio = None
                if audio and self.recordings_dir and not (self.recordings_dir / audio).is_file():
                    self.problem(node, f'{key}.{lang}: audio file "{audio}" not found in '
                                       f"{self.recordings_dir}")
                out[lang] = Prompt(lang, text, audio)
            else:
                self.problem(node, f"{key}.{lang}: expected text or {{audio, text}}")
        return MappingProxyType(out)

    def node(self, node_id: str, raw: Any, languages: tuple[str, ...]) -> Node | None:
        if not isinstance(raw, dict):
            self.problem(node_id, f"expected a table [nodes.{node_id}]")
            return None
        kind = raw.get("kind")
        if kind not in KINDS:
            got = "missing" if kind is None else f'"{kind}"'
            hint = suggest(str(kind), KINDS) if kind else ""
            self.problem(node_id, f"kind: unknown node kind {got}{hint}; "
                                  f"expected one of {', '.join(sorted(KINDS))}")
            return None
        cls, extra, required, _targets = KINDS[kind]
        allowed = (*COMMON, *extra)
        for key in raw:
            if key not in allowed:
                self.problem(node_id, f'{key}: unknown field for a {kind} node{suggest(key, allowed)}')
        for key in required:
            if key not in raw:
                self.problem(node_id, f"{key}: required for a {kind} node")
        if kind in NO_NEXT and "next" in raw:
            self.problem(node_id, f"next: a {kind} node does not continue with `next`")
        values: dict[str, Any] = {"id": node_id, "kind": kind}
        for key in allowed:
            if key in ("kind", "description") or key not in raw:
                continue
            value = raw[key]
            if key in PROMPT_FIELDS:
                values[key] = self.prompts(node_id, key, value, languages)
            else:
                checked = self.field(node_id, kind, key, value)
                if checked is not _BAD:
                    values[key] = checked
        try:
            return cls(**values)
        except TypeError as exc:  # pragma: no cover - guarded by the checks above
            self.problem(node_id, str(exc))
            return None

    def field(self, node_id: str, kind: str, key: str, value: Any) -> Any:
        check = FIELD_CHECKS.get(key, _string)
        result = check(value)
        if isinstance(result, _Bad):
            self.problem(node_id, f"{key}: {result.message}, got {value!r}")
            return _BAD
        if key == "options":
            return self.options(node_id, result)
        if key == "pattern":
            try:
                re.compile(result)
            except re.error as exc:
                self.problem(node_id, f"pattern: not a valid regular expression ({exc})")
                return _BAD
        return result

    def options(self, node_id: str, options: dict[str, str]) -> Mapping[str, str]:
        out: dict[str, str] = {}
        for key, target in options.items():
            k = key.strip()
            if len(k) != 1 or k not in VALID_KEYS:
                self.problem(node_id, f'options: invalid menu key "{key}"; a key is one of 0-9, * or #')
                continue
            if k in out:
                self.problem(node_id, f'options: duplicate menu key "{k}"')
                continue
            if not isinstance(target, str):
                self.problem(node_id, f'options.{k}: expected a node name, got {target!r}')
                continue
            out[k] = target
        return MappingProxyType(out)


class _Bad:
    def __init__(self, message: str):
        self.message = message


_BAD = object()


def _string(v: Any) -> Any:
    return v if isinstance(v, str) and v.strip() else _Bad("expected a non-empty string")


def _positive_number(v: Any) -> Any:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and 0 < v <= 600
    return float(v) if ok else _Bad("expected a number of seconds between 0 and 600")


def _int_range(lo: int, hi: int) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
        return v if ok else _Bad(f"expected a whole number from {lo} to {hi}")
    return check


def _key(v: Any) -> Any:
    return v if isinstance(v, str) and v in VALID_KEYS else _Bad("expected one key: 0-9, * or #")


def _bool(v: Any) -> Any:
    return v if isinstance(v, bool) else _Bad("expected true or false")


def _table(v: Any) -> Any:
    if isinstance(v, dict):
        return dict(v)
    return _Bad("expected a table")


def _string_table(v: Any) -> Any:
    if isinstance(v, dict) and all(isinstance(x, str | int | bool) for x in v.values()):
        return MappingProxyType({k: str(x) for k, x in v.items()})
    return _Bad("expected a table of text values")


FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "options": _table,
    "timeout_s": _positive_number,
    "retries": _int_range(0, 10),
    "max_digits": _int_range(1, 32),
    "min_digits": _int_range(0, 32),
    "max_length_s": _int_range(1, 3600),
    "priority": _int_range(-100, 100),
    "finish_on_key": _key,
    "repeat_key": _key,
    "yes": _key,
    "no": _key,
    "sensitive": _bool,
    "attributes": _string_table,
}

TOP_LEVEL = ("name", "start", "languages", "nodes", "description")


def parse_flow(text: str, file: str, *, recordings_dir: Path | None = None,
               path: Path | None = None) -> tuple[Flow | None, list[Problem]]:
    """Parse flow TOML; return the flow (None if unusable) and the problems found."""
    parser = _Parser(file, recordings_dir)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        parser.problem(None, f"not valid TOML: {exc}")
        return None, parser.problems
    for key in raw:
        if key not in TOP_LEVEL:
            parser.problem(None, f"{key}: unknown top-level key{suggest(key, TOP_LEVEL)}")
    languages = raw.get("languages", ["sv"])
    if (not isinstance(languages, list) or not languages
            or not all(isinstance(x, str) and LANGUAGE_RE.match(x) for x in languages)):
        parser.problem(None, f'languages: expected a list of language codes like ["sv", "en"], '
                             f"got {languages!r}")
        languages = ["sv"]
    if len(set(languages)) != len(languages):
        parser.problem(None, "languages: a language is declared twice")
    langs = tuple(dict.fromkeys(languages))
    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        parser.problem(None, "nodes: a flow needs at least one [nodes.NAME] table")
        return None, parser.problems
    nodes = {}
    for node_id, node_raw in nodes_raw.items():
        node = parser.node(node_id, node_raw, langs)
        if node is not None:
            nodes[node_id] = node
    start = raw.get("start")
    if not isinstance(start, str):
        parser.problem(None, "start: required, the name of the first node")
    elif start not in nodes_raw:
        parser.problem(None, f'start: unknown node "{start}"{suggest(start, nodes_raw)}')
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str):
        parser.problem(None, "name: expected a string")
        name = Path(file).stem
    flow = Flow(name=name, start=str(start), languages=langs,
                nodes=MappingProxyType(nodes), path=path)
    return flow, parser.problems
