"""``ivr prompts``: text-only prompts rendered for Asterisk, or listed when espeak-ng is absent."""

from __future__ import annotations

import math
import sys
import wave
from array import array
from dataclasses import replace
from pathlib import Path

from ivr import prompts
from ivr.config import load_settings
from ivr.controller import CALLBACK_CONFIRM, CALLBACK_HINT
from ivr.flowcheck import FlowContext, load_flow

from .asterisk_harness import ROOT, write_wav

FAKE_ESPEAK = """#!{python}
import math, sys, wave
args = sys.argv[1:]
with open({log!r}, "a", encoding="utf-8") as f:
    f.write(args[args.index("-v") + 1] + "\\t" + args[-1] + "\\n")
with wave.open(args[args.index("-w") + 1], "wb") as w:  # espeak-ng writes 22050 Hz mono
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(22050)
    tone = (int(8000 * math.sin(2 * math.pi * 440 * i / 22050)) for i in range(22050 // 2))
    w.writeframes(b"".join(t.to_bytes(2, "little", signed=True) for t in tone))
"""

FLOW = """name = "Liten"
start = "menu"
languages = ["sv", "en"]

[nodes.menu]
kind = "menu"
prompt.sv = "Tryck 1. Eller 2."
prompt.en = { audio = "en/menu.wav", text = "Press 1." }
options = { "1" = "bye", "2" = "bye" }

[nodes.bye]
kind = "hangup"
prompt.sv = "Hej då."
prompt.en = "Goodbye."
"""


def fake_espeak(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "espeak.log"
    script = tmp_path / "espeak-ng"
    script.write_text(FAKE_ESPEAK.format(python=sys.executable, log=str(log)), encoding="utf-8")
    script.chmod(0o755)
    return str(script), log


def setup_flow(tmp_path: Path):
    recordings = tmp_path / "recordings"
    write_wav(recordings / "en" / "menu.wav")
    settings = replace(load_settings(ROOT / "config.toml", env={}), recordings_dir=recordings)
    path = tmp_path / "liten.toml"
    path.write_text(FLOW, encoding="utf-8")
    return load_flow(path, FlowContext.from_settings(settings)), settings, path


def test_text_prompts_are_rendered_once_as_8khz_mono_at_their_text_hash(tmp_path) -> None:
    flow, settings, _ = setup_flow(tmp_path)
    espeak, log = fake_espeak(tmp_path)
    done = prompts.render_missing(flow, settings, espeak=espeak, positions=2, minutes=2)
    assert done and all(r.status == "rendered" for r in done)
    texts = {(r.language, r.text) for r in done}
    assert {("sv", "Tryck 1. Eller 2."), ("sv", "Hej då."), ("en", "Goodbye.")} <= texts
    assert ("en", "Press 1.") not in texts  # it has a recording
    assert ("sv", "Det valet finns inte.") in texts  # the built-in retry prompts too
    assert ("sv", "Du är nummer 2 i kön.") in texts  # the queue position sentences
    assert ("en", "The estimated waiting time is about 2 minutes.") in texts
    assert ("sv", CALLBACK_HINT["sv"]) in texts and ("en", CALLBACK_CONFIRM["en"]) in texts  # press 1
    path = settings.recordings_dir / prompts.tts_path("sv", "Hej då.")
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert abs(w.getnframes() - 4000) <= 2  # half a second, resampled
    voices = {line.split("\t")[0] for line in log.read_text(encoding="utf-8").splitlines()}
    assert voices == {"sv", "en"}
    assert prompts.render_missing(flow, settings, espeak=espeak, positions=2, minutes=2) == []  # all done


def test_without_espeak_the_missing_prompts_are_listed_and_nothing_is_written(tmp_path, capsys) -> None:
    flow, settings, path = setup_flow(tmp_path)
    missing = prompts.render_missing(flow, settings, espeak=str(tmp_path / "no-such-espeak"))
    assert missing and {r.status for r in missing} == {"missing"}
    assert not (settings.recordings_dir / "tts").exists()
    assert prompts.main(path, settings, espeak=str(tmp_path / "no-such-espeak")) == 0
    out, err = capsys.readouterr()
    assert "missing  sv" in out and "Tryck 1. Eller 2." in out and "0 rendered" in out
    assert "not installed" in err
    assert prompts.main(tmp_path / "nope.toml", settings) == 2


def test_resampling_keeps_the_pitch_and_the_length() -> None:
    tone = array("h", (int(10000 * math.sin(2 * math.pi * 440 * i / 22050)) for i in range(22050)))
    down = prompts.resample(tone, 22050, 8000)
    assert abs(len(down) - 8000) <= 1
    crossings = sum(1 for a, b in zip(down, down[1:], strict=False) if a < 0 <= b)
    assert 435 <= crossings <= 445
    assert prompts.resample(array("h", [0, 100]), 8000, 16000)[1] == 50
    assert prompts.sentences("Du är nummer 2 i kön. Beräknad väntetid är cirka 3 minuter.") == [
        "Du är nummer 2 i kön.", "Beräknad väntetid är cirka 3 minuter."]
