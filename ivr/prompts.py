"""``ivr prompts``: audio for every prompt that has only text, rendered with espeak-ng.

Asterisk plays files, not text. A prompt with no recording under ``recordings/`` is
rendered from its text with espeak-ng (voices ``sv`` and ``en``) into a path that
depends only on the language and the text, ``recordings/tts/<lang>/<sha1 of text>.wav``,
as 8 kHz mono 16-bit WAV (what Asterisk's ``wav`` format plays without transcoding
surprises). The Asterisk transport looks for exactly that path; edit a text and the
next ``ivr prompts`` renders the new one. Rendered besides the flow's prompts: the
built-in retry prompts, the announcement slots' texts, and the sentences of the queue
position messages (positions and minutes), which the transport plays piece by piece.

Without espeak-ng nothing is rendered and the missing prompts are listed.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ivr.controller import CALLBACK_CONFIRM, CALLBACK_HINT
from ivr.flow import DEFAULT_INVALID, DEFAULT_TIMEOUT, Flow
from ivr.vocabulary import Prompt

RATE = 8000
VOICES = {"sv": "sv", "en": "en"}  # language -> espeak-ng voice (others: the language code)
POSITIONS = 25  # queue positions rendered ahead of time (the longest max_length in config.toml)
MINUTES = 30    # estimated-wait minutes rendered ahead of time
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def tts_path(language: str, text: str) -> Path:
    """Where the rendering of ``text`` lives, relative to the recordings directory."""
    digest = hashlib.sha1(text.strip().encode("utf-8")).hexdigest()
    return Path("tts") / language / f"{digest}.wav"


def sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE.split(text.strip())) if s]


def has_audio(recordings_dir: Path, prompt: Prompt) -> bool:
    return bool(prompt.audio) and (recordings_dir / str(prompt.audio)).is_file()


def wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate() or RATE)
    except (OSError, EOFError, wave.Error):
        return None


# --------------------------------------------------------------------------- which prompts


def flow_prompts(flow: Flow) -> Iterator[Prompt]:
    """Every prompt a call through ``flow`` can hear, the built-in retry prompts included."""
    for node in flow.nodes.values():
        for f in fields(node):
            value = getattr(node, f.name)
            if isinstance(value, Mapping):
                yield from (p for p in value.values() if isinstance(p, Prompt))
    for builtin in (DEFAULT_INVALID, DEFAULT_TIMEOUT):
        for language in flow.languages:
            if language in builtin:
                yield Prompt(language, builtin[language])


def queue_sentences(languages: Iterable[str], positions: int = POSITIONS,
                    minutes: int = MINUTES) -> Iterator[Prompt]:
    """The sentences of every position message up to ``positions`` and ``minutes``."""
    from ivr.controller import position_prompt  # the controller's exact wording

    for language in languages:
        for n in range(1, positions + 1):
            yield from (Prompt(language, s) for s in sentences(position_prompt(language, n, None).text))
        for m in range(1, minutes + 1):
            waits = sentences(position_prompt(language, 1, m * 60.0).text)[1:]
            yield from (Prompt(language, s) for s in waits)


def all_prompts(flow: Flow, settings: Any, *, positions: int = POSITIONS,
                minutes: int = MINUTES) -> list[Prompt]:
    found: dict[tuple[str, str, str | None], Prompt] = {}
    announcements = [Prompt(lang, text, getattr(a, "audio", {}).get(lang))
                     for a in getattr(settings, "announcements", {}).values()
                     for lang, text in a.text.items()]
    queue = queue_sentences(flow.languages, positions, minutes)
    callback = [Prompt(lang, texts[lang]) for texts in (CALLBACK_HINT, CALLBACK_CONFIRM)
                for lang in flow.languages if lang in texts]
    for p in itertools.chain(flow_prompts(flow), announcements, queue, callback):
        if p.text.strip():
            found.setdefault((p.language, p.text.strip(), p.audio), p)
    return list(found.values())


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True, slots=True)
class PromptFile:
    """A prompt that had no audio: ``status`` "rendered", "missing" (no espeak-ng) or "failed"."""

    language: str
    text: str
    path: Path
    status: str
    error: str | None = None


def find_espeak(espeak: str = "espeak-ng") -> str | None:
    return espeak if os.path.sep in espeak and os.access(espeak, os.X_OK) else shutil.which(espeak)


def render_text(text: str, language: str, dest: Path, *, espeak: str = "espeak-ng",
                timeout_s: float = 60.0) -> Path:
    """Speak ``text`` into ``dest`` as 8 kHz mono 16-bit WAV (written atomically)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    voice = VOICES.get(language, language)
    with tempfile.TemporaryDirectory(prefix="ivr-tts-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run([espeak, "-v", voice, "-w", str(raw), text.strip()], check=True,
                       capture_output=True, timeout=timeout_s)
        samples, rate = _read_mono16(raw)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    try:
        with wave.open(str(part), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(resample(samples, rate, RATE).tobytes())
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    return dest


def _read_mono16(path: Path) -> tuple[array, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit audio from espeak-ng, got {8 * w.getsampwidth()}-bit")
        channels, rate = w.getnchannels(), w.getframerate()
        data = array("h", w.readframes(w.getnframes()))
    if sys.byteorder == "big":
        data.byteswap()
    if channels > 1:
        data = array("h", (sum(data[i:i + channels]) // channels for i in range(0, len(data), channels)))
    return data, rate


def resample(samples: array, src: int, dst: int) -> array:
    """Resample 16-bit samples; going down, each output is the mean of its input span
    (a box low-pass that keeps speech clean of aliasing at telephone rates)."""
    if src == dst or not samples:
        return array("h", samples)
    step = src / dst
    n = len(samples)
    out = array("h")
    if step >= 1:
        acc = list(itertools.accumulate(samples, initial=0))
        for i in range(int(n / step)):
            a = int(i * step)
            b = min(n, max(a + 1, int((i + 1) * step)))
            out.append(int((acc[b] - acc[a]) / (b - a)))
        return out
    for i in range(int(n / step)):  # going up: linear interpolation
        x = i * step
        a = int(x)
        b = min(a + 1, n - 1)
        out.append(int(samples[a] + (samples[b] - samples[a]) * (x - a)))
    return out


def render_missing(flow: Flow, settings: Any, *, espeak: str = "espeak-ng", positions: int = POSITIONS,
                   minutes: int = MINUTES) -> list[PromptFile]:
    """Render every prompt of ``flow`` (and the transport's queue sentences) that has no
    audio under ``settings.recordings_dir``; what still lacks audio has status "missing"."""
    recordings = Path(settings.recordings_dir)
    program = find_espeak(espeak)
    out: list[PromptFile] = []
    for prompt in all_prompts(flow, settings, positions=positions, minutes=minutes):
        path = recordings / tts_path(prompt.language, prompt.text)
        if has_audio(recordings, prompt) or path.is_file():
            continue
        if program is None:
            out.append(PromptFile(prompt.language, prompt.text, path, "missing"))
            continue
        try:
            render_text(prompt.text, prompt.language, path, espeak=program)
            out.append(PromptFile(prompt.language, prompt.text, path, "rendered"))
        except (OSError, ValueError, wave.Error, subprocess.SubprocessError) as exc:
            out.append(PromptFile(prompt.language, prompt.text, path, "failed", str(exc)[:200]))
    return out


def main(flow_path: Path, settings: Any, *, espeak: str = "espeak-ng") -> int:
    """``ivr prompts [FLOW]``: render what is missing, one line per prompt; exit 0 (2: no flow)."""
    from ivr.flow import FlowError
    from ivr.flowcheck import FlowContext, load_flow

    try:
        flow = load_flow(flow_path, FlowContext.from_settings(settings))
    except FlowError as exc:
        print(exc, file=sys.stderr)
        return 2
    results = render_missing(flow, settings, espeak=espeak)
    for r in results:
        shown = r.text if len(r.text) <= 70 else r.text[:67] + "..."
        extra = f" ({r.error})" if r.error else ""
        print(f"{r.status:8} {r.language} {r.path}: {shown}{extra}")
    counts = {s: sum(1 for r in results if r.status == s) for s in ("rendered", "missing", "failed")}
    print(f"{flow.name}: {counts['rendered']} rendered, {counts['missing']} missing, "
          f"{counts['failed']} failed")
    if counts["missing"]:
        print(f"{espeak} is not installed: install it (apt install espeak-ng) and run `ivr prompts` "
              "again, or record the prompts under recordings/", file=sys.stderr)
    return 0
