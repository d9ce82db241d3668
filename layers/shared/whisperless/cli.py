"""Command line: ``whisperless transcribe FILE ...``, ``whisperless serve`` and ``whisperless demo``.

The result goes to stdout; progress and logs go to stderr; a bad input exits
non-zero with a one-line error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from .contract.formats import RENDERERS
from .errors import AudioError, WhisperlessError


def _transcribe(args: argparse.Namespace) -> int:
    from .contract.options import TranscriptionOptions

    # Validate the request before importing the engine (seconds of torch import).
    options = TranscriptionOptions.from_params(
        {
            "diarization": args.diarization,
            "numSpeakers": args.num_speakers,
            "minSpeakers": args.min_speakers,
            "maxSpeakers": args.max_speakers,
            "language": args.language,
            "task": args.task,
            "initialPrompt": args.initial_prompt,
            "redact": args.redact,
            "redactionOutput": "redacted_and_unredacted" if args.unredacted else None,
            "redactAudio": bool(args.redact_audio),
            "sentiment": args.sentiment,
        }
    )
    if not os.path.isfile(args.file):
        raise AudioError(f"no such file: {args.file}", code="file_not_found")

    from .engine import Engine

    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        result = Engine(whisper_model=args.model).process(
            args.file, options, source={"file": os.path.basename(args.file)}, progress=bar
        )
    finally:
        if bar is not None:
            bar.close()
    if result.unredacted is not None:
        Path(args.unredacted).write_text(RENDERERS["json"](result.unredacted), encoding="utf-8")
    if result.redacted_audio is not None:
        Path(args.redact_audio).write_bytes(result.redacted_audio)
    sys.stdout.write(RENDERERS[args.format](result.document))
    return 0


class _ProgressBar:
    """Stage and percent on one terminal line of stderr, redrawn when either changes."""

    WIDTH = 30

    def __init__(self, stream):
        self.stream = stream
        self.shown: tuple[str, int] | None = None

    def __call__(self, stage: str, fraction: float) -> None:
        percent = max(0, min(100, int(fraction * 100)))
        if (stage, percent) == self.shown:
            return
        self.shown = (stage, percent)
        filled = self.WIDTH * percent // 100
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.WIDTH - filled)}] {percent:3d} % {stage:<13}")
        self.stream.flush()

    def close(self) -> None:
        if self.shown is not None:
            self.stream.write("\r" + " " * (self.WIDTH + 22) + "\r")
            self.stream.flush()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _serve(args: argparse.Namespace) -> int:
    from .local.serve import serve

    return serve(args)


def _demo(args: argparse.Namespace) -> int:
    from .local.demo import demo

    return demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whisperless", description="Serverless speech-to-text, run locally.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    t = commands.add_parser("transcribe", help="transcribe (and optionally diarize) one audio file")
    t.add_argument("file")
    t.add_argument("--diarization", action="store_true", help="also find who spoke when")
    t.add_argument("--num-speakers", type=str, help="exact number of speakers")
    t.add_argument("--min-speakers", type=str)
    t.add_argument("--max-speakers", type=str)
    t.add_argument("--language", help="ISO-639-1 code; default: detect")
    t.add_argument("--task", default="transcribe", help="transcribe | translate (to English)")
    t.add_argument("--initial-prompt", help="decoding hint: names, jargon")
    t.add_argument(
        "--model", help="tiny.en | base | a CTranslate2 folder | a hub id (default: $WHISPERLESS_MODEL, else base)"
    )
    t.add_argument("--format", choices=tuple(RENDERERS), default="json")
    t.add_argument(
        "--redact",
        metavar="TYPES",
        help="remove personal data from every output: 'pii' or entity types, comma-separated (PERSON,PHONE_NUMBER,...)",
    )
    t.add_argument("--unredacted", metavar="OUT.json", help="with --redact: also write the unredacted result here")
    t.add_argument(
        "--redact-audio", metavar="OUT.wav", help="with --redact: write the audio with each redacted span toned out"
    )
    t.add_argument("--sentiment", action="store_true", help="sentiment per segment, overall and per speaker (English)")
    t.set_defaults(run=_transcribe)

    s = commands.add_parser("serve", help="run the whole stack locally: S3/SQS/DynamoDB (moto), the HTTP API, a worker")
    s.add_argument("--port", type=int, help="API port (default: the remembered one, else a free one; 0: a free one)")
    s.add_argument("--s3-port", type=int, help="local S3/SQS/DynamoDB port (default: remembered, else free; 0: free)")
    s.add_argument("--api-key", help="API key to accept (default: the remembered one, else generated)")
    s.add_argument(
        "--webhook-secret", help="whsec_... secret that signs callbacks (default: the remembered one, else generated)"
    )
    s.add_argument(
        "--state",
        help="file that remembers ports, key and secret across restarts "
        "(default: $WHISPERLESS_CACHE/local/stack.json; 'none': remember nothing)",
    )
    s.add_argument(
        "--client-timeout",
        type=float,
        default=30.0,
        help="seconds a client may leave the API waiting for the rest of its request",
    )
    s.add_argument(
        "--allow-local-callbacks",
        action="store_true",
        help="let callbackURL and url point at this machine (local testing only)",
    )
    s.add_argument("--template", help="SAM template to build the stack from (default: the repository's)")
    s.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="transcriber workers running at once (threads sharing the loaded models); a long recording's "
        "chunks (WHISPERLESS_CHUNK_SECONDS) run on them side by side",
    )
    s.set_defaults(run=_serve)

    d = commands.add_parser("demo", help="the local stack end to end on a bundled real recording, then stop")
    d.add_argument("--format", choices=tuple(RENDERERS), default="json")
    d.add_argument("--timeout", type=float, default=600, help="seconds to wait for the result")
    d.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        import warnings

        warnings.filterwarnings("ignore")  # torch/pyannote deprecation chatter is not for users
    try:
        return args.run(args)
    except WhisperlessError as exc:
        where = f" ({exc.field})" if exc.field else ""
        print(f"whisperless: error{where}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
