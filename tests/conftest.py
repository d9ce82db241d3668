"""Shared fixtures: real speech (pyannote's bundled sample), made audio, one engine per session.

Tests live in folders by scope, and each folder's tests carry its marker:

    unit         pure code: parsing, rendering, SSRF rules, webhook signing (seconds)
    engine       real models on real speech
    handlers     the Lambda handlers on moto, in-process
    stack        the running local stack (``whisperless serve``) and the browser: the slow ones
    infra        the template: cfn-lint, the SAM transform, invariants
    reliability  faults, bad input, load and abuse (RELIABILITY.md); those on a running stack are
                 marked ``stack`` too
    deploy       deployable as written: least-privilege IAM enforced on whole jobs, the functions
                 started as Lambda starts them, the stack in a CloudFormation engine

Fast loop: ``bash scripts/test -m "not stack and not deploy"``; one scope: ``bash scripts/test -m engine``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))  # bench.synth / bench.quality are shared with the benchmarks
sys.path.insert(0, str(TESTS))  # support.py, localstack.py: shared by every scope
sys.path.insert(0, str(TESTS / "reliability"))  # reliability_common.py
sys.path.insert(0, str(TESTS / "deploy"))  # deploy_common.py
SCOPES = ("unit", "engine", "handlers", "stack", "infra", "reliability", "deploy")

os.environ.setdefault("WHISPERLESS_CACHE", str(ROOT / ".cache" / "whisperless"))
os.environ.setdefault("WHISPERLESS_OFFLINE", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Whisperless")  # as template.yaml's Globals set it

import whisperless  # noqa: E402,F401 - before any torch import: OpenMP wait policy, no pyannote telemetry
from whisperless.local.moto_fixes import behave_like_aws  # noqa: E402

behave_like_aws()  # where moto differs from AWS (atomic conditional writes, encoded event keys, key length)


def pytest_collection_modifyitems(config, items):
    for item in items:
        scope = Path(str(item.fspath)).parent.name
        if scope in SCOPES:
            item.add_marker(getattr(pytest.mark, scope))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    from bench.quality import SAMPLE_DIR

    return SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_wav(sample_dir) -> Path:
    return sample_dir / "sample.wav"


@pytest.fixture(scope="session")
def engine():
    from whisperless.engine import Engine

    return Engine(whisper_model="base")


@pytest.fixture(scope="session")
def sample_result(engine, sample_wav) -> dict:
    """The base model with diarization on the real two-speaker sample, computed once."""
    from whisperless.contract.options import TranscriptionOptions

    return engine.run(sample_wav, TranscriptionOptions(diarization=True), job_id="sample-job")


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


def encode(src: Path, dest: Path, codec: str, seconds: float | None = None) -> Path:
    """Re-encode audio with PyAV (mp3, aac, opus, ...) for container/codec tests."""
    import av
    import numpy as np

    from whisperless.engine.audio import decode_audio

    audio = decode_audio(src)
    if seconds:
        audio = audio[: int(seconds * 16000)]
    samples = (audio * 32767).astype(np.int16)
    with av.open(str(dest), "w") as out:
        stream = out.add_stream(codec, rate=16000 if codec != "libopus" else 48000)
        stream.layout = "mono"
        # Encoders such as AAC take fixed-size frames.
        step = stream.codec_context.frame_size or 1024
        for start in range(0, samples.size, step):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + step], format="s16", layout="mono")
            frame.sample_rate = 16000
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dest
