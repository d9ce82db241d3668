"""Synthetic speech for tests and benchmarks: espeak-ng voices joined with sox.

Each "speaker" is an espeak-ng voice variant; a conversation alternates speakers
with short pauses, and its reference turns (RTTM-like) are returned with it.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SAMPLE_RATE = 16000
# Ordered so that the first three are clearly distinct to a speaker-embedding model
# (espeak-ng variants share one synthesiser; en-us+m3 and en-gb+f2 embed close together).
VOICES = ("en-us+m3", "en-gb-scotland+f4", "en-us+m7", "en+m1", "en-gb+f2")
SENTENCES = (
    "The quarterly report is due on Friday and we still need the sales figures.",
    "I spoke to the warehouse this morning and they expect the delivery next week.",
    "Could you send me the slides before the meeting starts tomorrow?",
    "The new office in Berlin opens in March, with twelve people on the team.",
    "We should test the backup system again before the holidays.",
    "My train was late again, so I joined the call from the station.",
    "Please remember to update the budget sheet with the travel costs.",
    "The customer asked whether the price includes installation and support.",
)


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str
    text: str


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def say(text: str, voice: str, out: Path, speed: int = 165) -> float:
    raw = out.with_suffix(".raw.wav")
    _run("espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text)
    _run("sox", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out))
    raw.unlink()
    return float(subprocess.run(["soxi", "-D", str(out)], check=True, capture_output=True, text=True).stdout)


def conversation(
    out: Path,
    speakers: int = 3,
    turns: int = 9,
    pause: float = 0.6,
    language_voice: str | None = None,
    sentences=SENTENCES,
) -> list[Turn]:
    """Write a WAV of ``turns`` alternating turns by ``speakers`` voices; return the reference."""
    reference: list[Turn] = []
    with tempfile.TemporaryDirectory() as tmp:
        parts, clock = [], 0.0
        silence = Path(tmp) / "pause.wav"
        _run("sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(silence), "trim", "0", str(pause))
        for i in range(turns):
            voice = language_voice or VOICES[i % speakers]
            text = sentences[i % len(sentences)]
            part = Path(tmp) / f"turn{i}.wav"
            length = say(text, voice, part)
            reference.append(Turn(clock, clock + length, f"spk{i % speakers}", text))
            parts += [str(part), str(silence)]
            clock += length + pause
        _run("sox", *parts, str(out))
    return reference


def silence(out: Path, seconds: float) -> None:
    _run("sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(out), "trim", "0", str(seconds))
