"""Model resolution: offline names, folders, and clear messages for what is not here."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from whisperless.config import EngineSettings
from whisperless.engine import models
from whisperless.errors import ModelUnavailable


def resolve(name: str) -> str:
    return models.resolve_whisper_model(name, EngineSettings.from_env())


def test_base_is_assembled_from_its_two_packages_and_verified():
    path = resolve("base")
    model_bin = __import__("pathlib").Path(path) / "model.bin"
    assert model_bin.stat().st_size == 145217532
    digest = hashlib.sha256(model_bin.read_bytes()).hexdigest()
    assert digest == "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
    assert (model_bin.parent / "tokenizer.json").is_file()


def test_a_ctranslate2_folder_path_is_used_as_is():
    folder = resolve("tiny.en")
    assert resolve(folder) == folder


def test_a_folder_without_a_model_is_refused(tmp_path):
    with pytest.raises(ModelUnavailable, match="model.bin"):
        resolve(str(tmp_path))


def test_hub_names_offline_fail_saying_how_to_get_a_model(monkeypatch):
    monkeypatch.setenv("WHISPERLESS_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as err:
        resolve("large-v3")
    assert "tiny.en" in err.value.message and "base" in err.value.message and "folder" in err.value.message


def test_hub_names_pass_through_when_downloads_are_allowed(monkeypatch):
    monkeypatch.delenv("WHISPERLESS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert resolve("Systran/faster-whisper-small") == "Systran/faster-whisper-small"


def test_voice_embeddings_separate_real_speakers(sample_dir):
    """Enrolment embeddings (the space of Diarization.centroids): same-speaker stretches of real
    speech are closer than different-speaker ones, and each is nearest its own speaker's centroid."""
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine.audio import decode_audio
    from whisperless.engine.diarize import diarize

    settings = EngineSettings.from_env()
    pipeline = models.load_diarization("campplus", settings)
    audio = decode_audio(sample_dir / "sample.wav")
    turns = []
    for line in (sample_dir / "sample.rttm").read_text().splitlines():
        parts = line.split()
        start, length = float(parts[3]), float(parts[4])
        turns.append((start, start + length, parts[7]))
    # Keep the stretches of each turn where nobody else talks, so each embedding is one voice.
    clean = []
    for i, (start, end, speaker) in enumerate(turns):
        for j, (o_start, o_end, _) in enumerate(turns):
            if i != j and o_start < end and start < o_end:
                if o_start <= start:
                    start = max(start, o_end)
                else:
                    end = min(end, o_start)
        if end - start >= 1.5:
            clean.append((start, end, speaker))
    vectors = [pipeline.voice_embedding(audio[int(s * 16000) : int(e * 16000)]) for s, e, _ in clean]
    assert all(v is not None and abs(float(v @ v) - 1) < 1e-5 for v in vectors)
    same, different = [], []
    for i in range(len(clean)):
        for j in range(i + 1, len(clean)):
            (same if clean[i][2] == clean[j][2] else different).append(float(vectors[i] @ vectors[j]))
    assert same and different
    assert min(same) > max(different)
    # Each stretch matches the centroid of the speaker the diarization gives that stretch.
    result = diarize(pipeline, audio, TranscriptionOptions(diarization=True))
    assert set(result.centroids) == {t.speaker for t in result.turns}
    for (start, end, _), vector in zip(clean, vectors, strict=True):
        held = {}
        for t in result.turns:
            held[t.speaker] = held.get(t.speaker, 0.0) + max(0.0, min(end, t.end) - max(start, t.start))
        nearest = max(result.centroids, key=lambda name: float(result.centroids[name] @ vector))
        assert nearest == max(held, key=held.__getitem__)


def test_a_recording_without_speech_has_no_voice_embedding():
    import numpy as np

    pipeline = models.load_diarization("campplus", EngineSettings.from_env())
    assert pipeline.voice_embedding(np.zeros(5 * 16000, np.float32)) is None


def test_diarization_pipeline_is_loaded_once_per_process():
    settings = EngineSettings.from_env()
    first = models.load_diarization(settings.diarization_model, settings)
    assert models.load_diarization("campplus", EngineSettings.from_env()) is first  # equal settings, one pipeline


def _env_without_wait_policy() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}


@pytest.mark.parametrize(
    "user_env, expected",
    [
        ({}, ("ACTIVE", "300000")),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, ("PASSIVE", "0")),
    ],
)
def test_openmp_runtime_of_torch_and_ctranslate2_gets_the_wait_policy(user_env, expected):
    # libgomp prints what it read at load time; a user's own setting must win.
    env = {**_env_without_wait_policy(), **user_env, "OMP_DISPLAY_ENV": "VERBOSE"}
    for library in ("torch", "ctranslate2"):
        run = subprocess.run(
            [sys.executable, "-c", f"import whisperless, {library}"], capture_output=True, text=True, env=env
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"OMP_WAIT_POLICY = '{expected[0]}'" in run.stderr, library
        assert f"GOMP_SPINCOUNT = '{expected[1]}'" in run.stderr, library


def test_importing_whisperless_after_torch_warns_how_to_keep_the_speed():
    run = subprocess.run(
        [sys.executable, "-c", "import torch, whisperless"],
        capture_output=True,
        text=True,
        env=_env_without_wait_policy(),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "imported after torch" in run.stderr and "OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=300000" in run.stderr


def test_the_loaded_model_says_which_languages_it_has():
    from whisperless.engine.whisper import loaded_abilities

    settings = EngineSettings.from_env()
    base = loaded_abilities(models.load_whisper("base", settings), "base")
    assert len(base.languages) == 99 and "yue" not in base.languages and {"en", "de", "jw"} <= base.languages
    assert loaded_abilities(models.load_whisper("tiny.en", settings), "tiny.en").languages == {"en"}


def test_a_model_known_only_by_its_folder_is_checked_once_loaded(sample_wav):
    """A folder's name says nothing about its languages: the loaded model's tokenizer does (base
    has no <|yue|> token), and the job is refused naming the field instead of decoding without one."""
    from whisperless.contract.options import TranscriptionOptions
    from whisperless.engine import Engine
    from whisperless.errors import InvalidParameter

    folder = resolve("base")
    with pytest.raises(InvalidParameter) as err:
        Engine(whisper_model=folder).run(sample_wav, TranscriptionOptions(language="yue"))
    assert err.value.field == "language" and "yue" in err.value.message
