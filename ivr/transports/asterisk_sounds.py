"""The files Asterisk plays for the engine's prompts.

A prompt is played from its recording under ``recordings/`` when it has one, else from
its rendering by ``ivr prompts`` (``recordings/tts/<lang>/<sha1 of text>.wav``), else
sentence by sentence from the renderings of its sentences (how the queue position
messages are pre-rendered), else -- with espeak-ng installed on this host -- rendered on
the spot. Names are as Asterisk sees them: ``[asterisk] sounds`` + the path without its
extension (``ivr/tts/sv/3b34...``). What is found is remembered; what is missing is looked
for again next time (and logged once).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ivr.prompts import has_audio, render_text, sentences, tts_path, wav_seconds
from ivr.vocabulary import Prompt

log = logging.getLogger(__name__)


class Sounds:
    def __init__(self, recordings: Path, prefix: str, *, espeak: str | None = None,
                 max_prompt_s: float = 120.0):
        self.recordings = Path(recordings)
        self.prefix = prefix.rstrip("/")
        self.espeak = espeak
        self.max_prompt_s = max_prompt_s  # how long a file of unknown length may play
        self._seconds: dict[str, float] = {}
        self._found: dict[tuple[str, str, str | None], list[str]] = {}
        self._missing: set[tuple[str, str, str | None]] = set()

    async def resolve(self, prompt: Prompt) -> list[str]:
        """What Asterisk plays for a prompt: its recording, its rendering, or its sentences'."""
        key = (prompt.language, prompt.text, prompt.audio)
        if (known := self._found.get(key)) is not None:
            return known
        rec = self.recordings
        found: list[Path] | None = None
        full = tts_path(prompt.language, prompt.text)
        parts = [tts_path(prompt.language, s) for s in sentences(prompt.text)]
        if has_audio(rec, prompt):
            found = [Path(str(prompt.audio))]
        elif (rec / full).is_file():
            found = [full]
        elif len(parts) > 1 and all((rec / p).is_file() for p in parts):
            found = parts
        elif self.espeak and prompt.text.strip():
            try:
                await asyncio.to_thread(render_text, prompt.text, prompt.language, rec / full,
                                        espeak=self.espeak)
                found = [full]
            except Exception as exc:
                log.warning("asterisk: rendering %r failed: %s", prompt.text[:40], exc)
        if found is not None:
            if len(self._found) < 10_000:  # found stays found; what is missing is looked for again
                self._found[key] = [self._sound(p) for p in found]
            return [self._sound(p) for p in found]
        if key not in self._missing:
            self._missing.add(key)
            log.warning("asterisk: no audio for the %s prompt %r; run `ivr prompts`", prompt.language,
                        prompt.text[:60])
        return [self._sound(p) for p in parts if (rec / p).is_file()]

    def _sound(self, rel: Path) -> str:
        name = f"{self.prefix}/{rel.with_suffix('').as_posix()}"
        if name not in self._seconds:
            self._seconds[name] = wav_seconds(self.recordings / rel) or self.max_prompt_s
        return name

    def seconds(self, sound: str) -> float:
        return self._seconds.get(sound, self.max_prompt_s)

