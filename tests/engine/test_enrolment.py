"""Speakers by name with the real models on real meetings: a voice enrolled from one AMI meeting
names her in another, and nobody in a meeting she is not in; clips without enough speech are
refused naming the field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.diarization_quality import read_wav
from whisperless.config import EngineSettings
from whisperless.engine import Engine, models
from whisperless.engine.speakers import MATCH_THRESHOLD, enrol, name_speakers
from whisperless.errors import AudioError

DATA = Path(__file__).resolve().parents[1] / "data" / "speakers"


@pytest.fixture(scope="module")
def pipeline():
    return models.load_diarization("campplus", EngineSettings.from_env())


@pytest.fixture(scope="module")
def fiona(pipeline):
    return enrol(pipeline, read_wav(DATA / "trn06-fee083.wav"))


def test_enrolment_gives_a_unit_voice_and_the_speech_it_heard(fiona):
    assert fiona.embedding.shape == (192,)
    assert np.linalg.norm(fiona.embedding) == pytest.approx(1, abs=1e-4)
    assert 4 <= fiona.speech_seconds <= 8.1  # 8.1 s clip of continuous talk


def test_her_voice_names_her_in_another_meeting_and_no_one_else(pipeline, fiona):
    named, table = name_speakers(pipeline(read_wav(DATA / "trn09.wav")), {"Fiona": fiona.embedding})
    assert list(named.names.values()) == ["Fiona"], table
    assert len(table) >= 2  # the others keep their labels
    # A meeting she is not in: nobody is her.
    named, table = name_speakers(pipeline(read_wav(DATA.parent / "trn03.wav")), {"Fiona": fiona.embedding})
    assert named.names == {} and all(row["similarity"] < MATCH_THRESHOLD for row in table), table


@pytest.mark.parametrize(
    "audio, code",
    [
        (np.zeros(5 * 16000, np.float32), "too_little_speech"),
        (np.random.default_rng(0).normal(0, 1e-4, 16000).astype(np.float32), "too_little_speech"),
        (np.zeros(61 * 16000, np.float32), "audio_too_long"),
    ],
)
def test_clips_without_enough_speech_are_refused_naming_the_file(pipeline, audio, code):
    with pytest.raises(AudioError) as caught:
        enrol(pipeline, audio)
    assert caught.value.code == code and caught.value.field == "file"
    assert caught.value.caller_fault


def test_the_engine_decodes_and_enrols_a_file(tmp_path):
    voice = Engine().enrol(DATA / "trn06-fee083.wav")
    assert voice.speech_seconds >= 2
    (tmp_path / "x.wav").write_bytes(b"not audio")
    with pytest.raises(AudioError) as caught:
        Engine().enrol(tmp_path / "x.wav")
    assert caught.value.field == "file"
