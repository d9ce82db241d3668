"""Bad audio gets a clear, typed error; the CLI turns it into one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
import wave

import pytest

from whisperless.engine.audio import decode_audio
from whisperless.errors import AudioError


def _zero_length_wav(path):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return path


@pytest.fixture
def bad_files(tmp_path, sample_wav):
    from conftest import encode

    mp3 = encode(sample_wav, tmp_path / "full.mp3", "libmp3lame", seconds=10)
    data = mp3.read_bytes()
    files = {
        "empty_file": tmp_path / "empty.wav",
        "not_audio:random": tmp_path / "random.wav",
        "not_audio:text": tmp_path / "notes.mp3",
        "zero_length": _zero_length_wav(tmp_path / "zero.wav"),
        "truncated": tmp_path / "truncated.mp3",
        "no_audio_stream": tmp_path / "picture.png",
    }
    files["empty_file"].write_bytes(b"")
    files["not_audio:random"].write_bytes(bytes(range(256)) * 40)
    files["not_audio:text"].write_text("this is a shopping list, not a song\n" * 20)
    files["truncated"].write_bytes(data[:300])  # header and a frame or two, then nothing
    # A PNG: a container FFmpeg opens, with no audio stream in it.
    import struct
    import zlib  # noqa: E401

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )
    files["no_audio_stream"].write_bytes(png)
    return files


@pytest.mark.parametrize("case", ["empty_file", "not_audio:random", "not_audio:text", "zero_length", "no_audio_stream"])
def test_undecodable_input_raises_a_typed_error(bad_files, case):
    with pytest.raises(AudioError) as err:
        decode_audio(bad_files[case])
    expected = case.split(":")[0]
    assert (
        err.value.code in {expected, "not_audio", "zero_length"}
        if case == "no_audio_stream"
        else err.value.code == expected
    )
    assert err.value.message


def test_truncated_file_is_an_error_or_the_part_that_decodes(bad_files):
    # A cut mp3 either decodes its intact frames (short audio) or fails as corrupt: never crashes.
    try:
        audio = decode_audio(bad_files["truncated"])
    except AudioError as exc:
        assert exc.code in {"corrupt_audio", "zero_length", "not_audio"}
    else:
        assert audio.size < 16000 * 10


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(AudioError) as err:
        decode_audio(tmp_path / "nope.wav")
    assert err.value.code == "unreadable"


def test_overlong_audio_is_refused(sample_wav):
    with pytest.raises(AudioError) as err:
        decode_audio(sample_wav, max_seconds=5)
    assert err.value.code == "audio_too_long"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "whisperless.cli", *args], capture_output=True, text=True, timeout=600)


def test_cli_reports_bad_audio_in_one_line(bad_files):
    run = _cli("transcribe", str(bad_files["not_audio:text"]))
    assert run.returncode == 2
    assert run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("whisperless: error") and "not an audio file" in lines[-1]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "args,field",
    [
        (["--task", "summarize"], "task"),
        (["--num-speakers", "two"], "numSpeakers"),
        (["--language", "klingon"], "language"),
        (["--model", "tiny.en", "--task", "translate"], "task"),
        (["--model", "tiny.en", "--language", "de"], "language"),
    ],
)
def test_cli_refuses_bad_parameters_naming_the_field(sample_wav, args, field):
    run = _cli("transcribe", str(sample_wav), *args)
    assert run.returncode == 2
    assert f"error ({field})" in run.stderr and "Traceback" not in run.stderr


def test_cli_prints_the_contract_document_and_subtitles(sample_wav, tmp_path):
    import json

    from conftest import encode

    clip = encode(sample_wav, tmp_path / "clip.mp3", "libmp3lame", seconds=12)
    run = _cli("transcribe", str(clip), "--model", "tiny.en")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["status"] == "completed" and doc["model"] == "tiny.en" and "hello" in doc["text"].lower()
    srt = _cli("transcribe", str(clip), "--model", "tiny.en", "--format", "srt")
    assert srt.stdout.startswith("1\n00:00:") and " --> " in srt.stdout
