"""Long recordings in chunks (engine/longform.py): the plan covers the file, a chunk decodes only
its range, parts survive their .npz, the transcripts join at a silence with no word lost or
doubled, and chunks merged give the single pass's diarization exactly and its words closely."""

from __future__ import annotations

import numpy as np
import pytest

from whisperless.contract.options import TranscriptionOptions
from whisperless.engine.audio import SAMPLE_RATE, decode_audio, probe_duration
from whisperless.engine.longform import ChunkOutput, plan, stitch
from whisperless.engine.types import Segment, Transcript, Word


def test_the_plan_covers_the_file_in_whole_blocks():
    samples = round(3725.3 * SAMPLE_RATE)
    chunks = plan(samples, 600)
    assert [c.index for c in chunks] == list(range(7)) and all(c.total == 7 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == pytest.approx(3725.3)
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:], strict=False))
    assert all(c.start % 30 == 0 for c in chunks)  # CAM++ blocks: the chunked run equals one pass
    assert sum(c.windows for c in chunks) == chunks[-1].first_window + chunks[-1].windows
    assert plan(samples, 45)[1].start == 30  # rounded down to whole blocks


def test_a_range_decodes_what_the_whole_file_has_there(sample_wav, tmp_path):
    from conftest import encode

    whole = decode_audio(sample_wav)
    part = decode_audio(sample_wav, start=7.3, end=12.1)
    assert np.array_equal(part, whole[round(7.3 * SAMPLE_RATE) : round(12.1 * SAMPLE_RATE)])
    assert probe_duration(sample_wav) == pytest.approx(whole.size / SAMPLE_RATE)
    mp3 = encode(sample_wav, tmp_path / "clip.mp3", "libmp3lame")
    whole, part = decode_audio(mp3), decode_audio(mp3, start=10.0, end=20.0)
    assert part.size == 10 * SAMPLE_RATE
    reference = whole[10 * SAMPLE_RATE : 20 * SAMPLE_RATE]
    # A compressed stream seeks to a frame before the start (its priming delay counted): the same
    # samples, give or take the decoder's warm-up.
    lag = max(range(-160, 161), key=lambda k: float(np.dot(np.roll(part, k), reference)))
    assert abs(lag) <= 16 and np.corrcoef(part[1000:], reference[1000:])[0, 1] > 0.99
    assert abs(probe_duration(mp3) - whole.size / SAMPLE_RATE) < 0.2


def _words(*spans: tuple[str, float, float]) -> Segment:
    words = [Word(f" {w}", s, e, 0.9) for w, s, e in spans]
    return Segment(words[0].start, words[-1].end, "".join(w.word for w in words).strip(), words, tokens=[1, 2])


def _talk(name: str, start: float, end: float) -> list[tuple[str, float, float]]:
    """Words of 0.4 s every 0.6 s (no pause long enough to cut at)."""
    return [(f"{name}{i}", start + 0.6 * i, start + 0.6 * i + 0.4) for i in range(int((end - start) / 0.6))]


def _part(index: int, start: float, segments: list[Segment]) -> ChunkOutput:
    return ChunkOutput(index, 2, 200 * SAMPLE_RATE, start, Transcript("en", segments), None)


def _said(transcript: Transcript) -> list[str]:
    return [w.word.strip() for s in transcript.segments for w in s.words]


def test_transcripts_join_at_the_longest_silence_near_the_boundary():
    # Both chunks heard the talk around the boundary (100 s); the pause 101.0-102.6 s is the
    # longest there. The later chunk heard one word differently before it ("tree").
    before, after = _talk("x", 92.0, 101.0), _talk("y", 102.6, 108.0)
    left = [_words(*before[:-1], ("three", 100.4, 101.0)), _words(*after)]
    right = [_words(*before[1:-1], ("tree", 100.4, 101.0)), _words(*after[:-2]), _words(*after[-2:])]
    joined = stitch([_part(1, 100.0, right), _part(0, 0.0, left)])
    assert _said(joined) == [w for w, _, _ in before[:-1]] + ["three"] + [w for w, _, _ in after]
    assert len(joined.segments) == 3 and joined.segments[0].tokens == [1, 2]  # whole segments keep their tokens


def test_a_segment_across_the_cut_keeps_only_its_side():
    before, after = _talk("x", 92.0, 97.0), _talk("y", 99.5, 108.0)
    left = [_words(*before, *after[:4])]  # one segment across the pause 96.6-99.5 s
    right = [_words(*before[2:]), _words(*after)]
    joined = stitch([_part(0, 0.0, left), _part(1, 100.0, right)])
    assert _said(joined) == [w for w, _, _ in before + after]
    first = joined.segments[0]
    assert first.text == " ".join(w for w, _, _ in before) and first.end == before[-1][2] and first.tokens is None


def test_a_part_survives_its_file(tmp_path):
    from whisperless.engine.diarization import LocalOutput

    local = LocalOutput(
        2.5,
        12,
        np.ones((3, 589, 3), np.uint8),
        np.full((3, 3, 192), np.nan, np.float32),
        np.zeros((3, 3), np.float32),
        200 * SAMPLE_RATE,
    )
    part = ChunkOutput(1, 2, 200 * SAMPLE_RATE, 30.0, Transcript("de", [_words(("hallo", 31.0, 31.4))]), local, 4.5)
    again = ChunkOutput.load(part.save())
    assert again.transcript == part.transcript and again.seconds == 4.5 and again.start == 30.0
    assert again.local is not None and again.local.first_window == 12
    assert np.array_equal(again.local.activity, local.activity)
    assert np.array_equal(again.local.embeddings, local.embeddings, equal_nan=True)


def test_chunks_merged_give_the_single_pass_s_speakers(tmp_path):
    from support import long_recording
    from whisperless.engine import Engine

    path = long_recording(tmp_path / "long.wav")
    engine = Engine(whisper_model="tiny.en")
    options = TranscriptionOptions(diarization=True, language="en")
    single = engine.run(path, options, job_id="single")
    num_samples = decode_audio(path).size
    parts = [
        ChunkOutput.load(engine.transcribe_chunk(path, options, chunk, num_samples).save())
        for chunk in plan(num_samples, 30)
    ]
    merged = engine.merge_chunks(parts, options, job_id="merged").document
    assert merged["chunks"] == 4 and single["chunks"] == 1
    assert merged["diarization"] == single["diarization"]  # one clustering over every chunk
    one, many = single["text"].lower().split(), merged["text"].lower().split()
    from jiwer import wer

    assert wer(" ".join(one), " ".join(many)) < 0.15  # Whisper's context differs at the joins
    words = [w for s in merged["segments"] for w in s["words"]]
    assert all(a["start"] <= b["start"] for a, b in zip(words, words[1:], strict=False))
