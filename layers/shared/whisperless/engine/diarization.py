"""Who spoke when: our diarization pipeline (``campplus``), in two stages that can run apart.

segmentation-3.0 (pyannote) finds up to three local speakers in each 10 s window; CAM++ embeds
each of them; clustering links local speakers across windows into the file's speakers. Both models
run in ONNX Runtime (:mod:`.onnx_models`) and everything else is numpy/scipy: no torch, no
pyannote.audio at run time.

The API (also what splitting long jobs across tasks and matching enrolled voices build on):

    plan_chunks(num_samples, config, chunk_seconds) -> [(first_window, count), ...]
    chunk_audio_range(first_window, count, num_samples, config) -> (start, end) samples to decode
    local_stage(audio, models, config, offset=, first_window=, count=, num_samples=) -> LocalOutput
        per audio range (one task per chunk): segmentation + CAM++ embeddings, numpy arrays only;
        LocalOutput.save / LocalOutput.load move it between tasks (.npz, no pickle)
    global_stage([LocalOutput, ...], config, num_speakers=, min_speakers=, max_speakers=)
        -> Diarization(turns, centroids): once per file, over every chunk's output
    Pipeline(models, config)(audio, **hints)
        both stages in one process; what ``models.load_diarization("campplus")`` returns
    Pipeline.voice_embedding(audio) -> (192,) unit vector or None
        an enrolment recording in the space of ``Diarization.centroids``: cosine similarity
        (a dot product) with a centroid says how alike two voices are

A chunked run computes exactly what a single run does (tests check it): windows sit on a grid
fixed by the file (window k starts at k * step), chunks start on CAM++ block boundaries, and
each block's features depend on that block's samples only.

How it works (each choice measured on real meetings and made conversations: BENCHMARKS.md):

* Local stage. Windows of 10 s every ``step`` = 2.5 s. segmentation-3.0 gives each 17 ms frame one
  of 7 powerset classes (argmax): which of 3 local speakers are active. CAM++ frame features are
  computed once per ``block`` = 30 s of audio that has speech (not once per overlapping window:
  ~10x less work), and each (window, local speaker) pools them, mean and standard deviation, over
  the frames where that speaker talks alone (overlapped speech mixes voices), or over all its
  frames when that leaves under ``min_pool`` s. ``clean`` records the seconds of lone speech
  behind each embedding.
* Global stage. Embeddings backed by at least ``min_clean`` s of lone speech are clustered:
  agglomerative, centroid linkage on unit vectors, cut at ``threshold`` (0.65). A cluster holding
  under ``min_speech`` s of lone speech in all is not a speaker of its own: it is folded into the
  nearest larger one (this is what keeps short files and brief interjections from adding
  speakers). Speaker-count hints re-cut the tree. Every active local speaker is then given the
  nearest centroid, two local speakers of one window two different speakers (Hungarian).
* Turns: pyannote's reconstruction, in numpy (a test checks it equals pyannote's): each frame's
  speaker count (the windows' mean number of active local speakers, rounded) and that many
  speakers with the most activity there. Overlapping speech is kept: two speakers at once give
  two overlapping turns.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE
from .onnx_models import EMBEDDING_DIM, FEATURE_DIM, LOCAL_SPEAKERS, POWERSET, WINDOW_SAMPLES, SpeakerModels
from .types import Diarization, Turn

WINDOW = WINDOW_SAMPLES / SAMPLE_RATE
# segmentation-3.0's output frames within a window (pyannote's model.receptive_field for this
# checkpoint: SincNet stride 10, 991-sample receptive field, 270-sample hop).
FRAME_START, FRAME_DURATION, FRAME_STEP = 0.0, 0.0619375, 0.016875
FRAMES_PER_WINDOW = 589
CAM_FRAME = 0.02  # one CAM++ frame feature per 20 ms


@dataclass(frozen=True)
class DiarizationConfig:
    step: float = 2.5  # s between the starts of two 10 s windows
    block: float = 30.0  # s of audio per CAM++ pass; a multiple of step
    min_pool: float = 0.5  # s: pool over all of a speaker's frames when fewer are lone speech
    min_clean: float = 1.0  # s of lone speech an embedding needs to help build the clusters
    threshold: float = 0.65  # where centroid linkage stops merging (distance between unit vectors)
    min_speech: float = 1.0  # s of lone speech a cluster needs to be a speaker of its own
    segmentation_batch: int = 8  # windows per segmentation pass
    # Centroid linkage costs O(n^2) memory and about O(n^2)-O(n^3) time: 4000 embeddings take
    # 2.5 s, 8000 take 29 s (bench/fanout.py, BENCHMARKS.md). Past this many, the clusters are
    # built from the embeddings with the most lone speech (about the first 2 hours' worth of a
    # meeting); every embedding is then given its nearest centroid, as always.
    max_train: int = 5000

    def __post_init__(self) -> None:
        step, block = round(self.step * SAMPLE_RATE), round(self.block * SAMPLE_RATE)
        if step <= 0 or block <= 0 or block % step:
            raise ValueError(f"block ({self.block} s) must be a positive multiple of step ({self.step} s)")


# ------------------------------------------------------------------------------------ local stage


@dataclass
class LocalOutput:
    """What the global stage needs from one range of windows; numpy arrays only."""

    step: float
    first_window: int  # global index of the first window (window k starts at k * step)
    activity: np.ndarray  # (W, 589, 3) uint8: each local speaker's segmentation, per frame
    embeddings: np.ndarray  # (W, 3, 192) float32: NaN where a local speaker has no embedding
    clean: np.ndarray  # (W, 3) float32: seconds of lone speech of each local speaker
    num_samples: int  # samples in the whole file

    def save(self, file) -> None:
        """To a path or binary file object (compressed .npz)."""
        np.savez_compressed(
            file,
            step=self.step,
            first_window=self.first_window,
            activity=self.activity,
            embeddings=self.embeddings,
            clean=self.clean,
            num_samples=self.num_samples,
        )

    @classmethod
    def load(cls, file) -> LocalOutput:
        with np.load(file, allow_pickle=False) as d:
            return cls(
                float(d["step"]),
                int(d["first_window"]),
                d["activity"],
                d["embeddings"],
                d["clean"],
                int(d["num_samples"]),
            )


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def num_windows(num_samples: int, config: DiarizationConfig) -> int:
    """Windows of a file: enough to cover every sample (the last one zero-padded)."""
    if num_samples <= WINDOW_SAMPLES:
        return 1
    return math.ceil((num_samples - WINDOW_SAMPLES) / _samples(config.step)) + 1


def plan_chunks(num_samples: int, config: DiarizationConfig, chunk_seconds: float = 600.0) -> list[tuple[int, int]]:
    """Split a file's windows into chunk tasks: [(first_window, count)], each chunk starting on a
    CAM++ block boundary (``chunk_seconds`` is rounded down to whole blocks, at least one)."""
    per_block = _samples(config.block) // _samples(config.step)
    per_chunk = max(1, int(chunk_seconds // config.block)) * per_block
    total = num_windows(num_samples, config)
    return [(first, min(per_chunk, total - first)) for first in range(0, total, per_chunk)]


def chunk_audio_range(first_window: int, count: int, num_samples: int, config: DiarizationConfig) -> tuple[int, int]:
    """The samples [start, end) a chunk task must decode: whole blocks covering its windows."""
    block = _samples(config.block)
    start = first_window * _samples(config.step)
    end = (first_window + count - 1) * _samples(config.step) + WINDOW_SAMPLES
    return (start // block) * block, min(num_samples, math.ceil(end / block) * block)


def _frame_index(seconds: np.ndarray) -> np.ndarray:
    """Nearest segmentation frame to a time measured from a window's start."""
    return np.rint((seconds - FRAME_START - FRAME_DURATION / 2) / FRAME_STEP).astype(int)


def local_stage(
    audio: np.ndarray,
    models: SpeakerModels,
    config: DiarizationConfig = DiarizationConfig(),
    *,
    offset: int = 0,
    first_window: int = 0,
    count: int | None = None,
    num_samples: int | None = None,
    hook: Callable[..., None] | None = None,
) -> LocalOutput:
    """Segmentation and embeddings for windows ``first_window`` .. ``first_window + count - 1``.

    ``audio`` holds the file's samples from ``offset`` on (the whole file by default) and must
    cover :func:`chunk_audio_range` of those windows; ``num_samples`` is the whole file's length.
    ``hook`` is called after each segmentation batch and each embedded block (a stopping worker
    raises from it).
    """
    checkpoint = hook or (lambda: None)
    audio = np.asarray(audio, dtype=np.float32)
    num_samples = audio.size + offset if num_samples is None else num_samples
    if count is None:
        count = num_windows(num_samples, config) - first_window
    step = _samples(config.step)
    starts = (first_window + np.arange(count)) * step  # in samples of the file

    def window(start: int) -> np.ndarray:
        out = audio[max(start - offset, 0) : start - offset + WINDOW_SAMPLES]
        return np.pad(out, (0, WINDOW_SAMPLES - out.size)) if out.size < WINDOW_SAMPLES else out

    # 1. segmentation: the most likely powerset class per frame -> active local speakers
    # Batches side by side, one core each; a short file's few windows shared evenly between them.
    batch = max(1, min(config.segmentation_batch, math.ceil(count / models.workers)))
    batches: list[np.ndarray] = []
    _in_order(
        models,
        lambda i: models.segment(np.stack([window(s) for s in starts[i : i + batch]])).argmax(-1),
        list(range(0, count, batch)),
        lambda _, classes: batches.append(classes),
        checkpoint,
    )
    classes = np.concatenate(batches)
    activity = POWERSET[classes]  # (W, 589, 3)
    alone = activity * (activity.sum(-1, keepdims=True) == 1)

    # 2. CAM++ frame features once per block with speech, summed per (window, local speaker)
    # over its lone frames (s*) and over all its frames (a*): count, sum, sum of squares.
    s0, a0 = np.zeros((count, LOCAL_SPEAKERS)), np.zeros((count, LOCAL_SPEAKERS))
    s1, s2 = np.zeros((count, LOCAL_SPEAKERS, FEATURE_DIM)), np.zeros((count, LOCAL_SPEAKERS, FEATURE_DIM))
    a1, a2 = np.zeros_like(s1), np.zeros_like(s2)
    block = _samples(config.block)
    frame_samples = (FRAME_START + FRAME_DURATION / 2 + FRAME_STEP * np.arange(activity.shape[1])) * SAMPLE_RATE
    has_speech = activity.any(axis=(1, 2))
    blocks = []  # (first sample, end, the windows with speech that overlap it)
    for b0 in range((starts[0] // block) * block, min(num_samples, starts[-1] + WINDOW_SAMPLES), block):
        b1 = min(b0 + block, num_samples)
        windows = np.nonzero((starts < b1) & (starts + WINDOW_SAMPLES > b0) & has_speech)[0]
        # Only blocks where some window hears speech inside the block itself.
        if any(
            activity[w][(starts[w] + frame_samples >= b0) & (starts[w] + frame_samples < b1)].any() for w in windows
        ):
            blocks.append((b0, b1, windows))

    def add_block(item, result) -> None:
        b0, _, windows = item
        features, times = result
        if not len(features) or not len(windows):
            return
        times = times + b0 / SAMPLE_RATE
        # Every window's frame under every feature frame (weight 0 outside the window), so that
        # one matrix product per block sums the statistics of all its windows' local speakers.
        j = _frame_index(times[None, :] - starts[windows, None] / SAMPLE_RATE)  # (W, T)
        inside = ((j >= 0) & (j < activity.shape[1]))[..., None]
        j = np.clip(j, 0, activity.shape[1] - 1)
        lone = (alone[windows[:, None], j] * inside).astype(np.float32)  # (W, T, 3)
        active = (activity[windows[:, None], j] * inside).astype(np.float32)
        weights = np.concatenate([lone, active], axis=2).transpose(0, 2, 1).reshape(-1, len(features))
        sums = (weights @ np.concatenate([features, features * features], axis=1)).reshape(
            len(windows), 2, LOCAL_SPEAKERS, 2, FEATURE_DIM
        )  # (window, lone or active, local speaker, sum or sum of squares, feature)
        s0[windows] += lone.sum(1)
        a0[windows] += active.sum(1)
        s1[windows] += sums[:, 0, :, 0]
        s2[windows] += sums[:, 0, :, 1]
        a1[windows] += sums[:, 1, :, 0]
        a2[windows] += sums[:, 1, :, 1]

    # Blocks side by side, one core each; a lone block (a short file) on every core.
    _in_order(
        models,
        lambda item: models.frame_features(audio[item[0] - offset : item[1] - offset], wide=len(blocks) == 1),
        blocks,
        add_block,
        checkpoint,
    )

    # 3. statistics -> embeddings: mean and unbiased standard deviation, CAM++'s pooling head
    use_lone = s0 >= config.min_pool / CAM_FRAME
    n = np.where(use_lone, s0, a0)
    mean = np.where(use_lone[..., None], s1, a1) / np.maximum(n, 1)[..., None]
    squares_sum = np.where(use_lone[..., None], s2, a2)
    var = (squares_sum - n[..., None] * mean * mean) / np.maximum(n - 1, 1)[..., None]
    stats = np.concatenate([mean, np.sqrt(np.maximum(var, 0))], axis=-1)
    embeddings = np.full((count, LOCAL_SPEAKERS, EMBEDDING_DIM), np.nan, np.float32)
    valid = n >= 2
    if valid.any():
        embeddings[valid] = models.embed(stats[valid])
    clean = (alone.sum(1) * FRAME_STEP).astype(np.float32)
    return LocalOutput(config.step, first_window, activity.astype(np.uint8), embeddings, clean, num_samples)


def _in_order(
    models: SpeakerModels,
    func: Callable[[Any], Any],
    items: list,
    consume: Callable[[Any, Any], None],
    checkpoint: Callable[[], None],
) -> None:
    """``consume(item, func(item))`` for each item in order, ``func`` running on the models' pool
    (ONNX Runtime releases the GIL) at most two items per worker ahead, so what is computed and
    not yet consumed stays bounded; a raise from ``checkpoint`` (called after each item) cancels
    what has not started."""
    ahead = 2 * models.workers
    futures: dict[int, Future] = {}
    try:
        for i, item in enumerate(items):
            for j in range(i, min(i + ahead, len(items))):
                if j not in futures:
                    futures[j] = models.pool.submit(func, items[j])
            consume(item, futures.pop(i).result())
            checkpoint()
    finally:
        for future in futures.values():
            future.cancel()


# ----------------------------------------------------------------------------------- global stage


def _concatenate(outputs: list[LocalOutput]) -> LocalOutput:
    outputs = sorted(outputs, key=lambda o: o.first_window)
    expected = 0
    for o in outputs:
        if o.first_window != expected:
            raise ValueError(f"windows {expected}..{o.first_window - 1} are missing from the local outputs")
        if o.step != outputs[0].step or o.num_samples != outputs[0].num_samples:
            raise ValueError("local outputs of different files or settings")
        expected += len(o.activity)
    return LocalOutput(
        outputs[0].step,
        0,
        np.concatenate([o.activity for o in outputs]),
        np.concatenate([o.embeddings for o in outputs]),
        np.concatenate([o.clean for o in outputs]),
        outputs[0].num_samples,
    )


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cluster(
    local: LocalOutput,
    config: DiarizationConfig,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (the speaker of each (window, local speaker) (W, 3), -2 where silent; unit centroids (K, 192))."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.optimize import linear_sum_assignment

    embeddings, clean = local.embeddings, local.clean
    active = local.activity.sum(1) > 0
    valid = active & ~np.isnan(embeddings).any(-1)
    hard = np.full(valid.shape, -2)
    if not valid.any():
        return hard, np.zeros((0, EMBEDDING_DIM), np.float32)
    train = valid & (clean >= config.min_clean)
    if not train.any():  # short or sparse files: build clusters from whatever speech there is
        train = valid
    if train.sum() > config.max_train:  # long recordings: the best-backed embeddings build the clusters
        candidates = np.flatnonzero(train)
        keep = candidates[np.argsort(-clean.ravel()[candidates], kind="stable")[: config.max_train]]
        train = np.zeros_like(train)
        train.ravel()[keep] = True
    X = _unit(embeddings[train].astype(np.float64))  # noqa: N806 - the usual name for a data matrix
    n = len(X)
    lo = num_speakers or min_speakers or 1
    hi = num_speakers or max_speakers or n
    if n == 1 or hi < 2:
        labels = np.zeros(n, int)
    else:
        tree = linkage(X, method="centroid", metric="euclidean")
        labels = fcluster(tree, config.threshold, criterion="distance") - 1
        speech = np.bincount(labels, weights=clean[train])
        large = np.nonzero(speech >= config.min_speech)[0]
        if len(large) == 0:
            large = np.array([int(np.argmax(speech))])
        if not lo <= len(large) <= hi:  # a hint: cut the tree into that many instead
            target = min(max(len(large), lo), hi, n)
            labels = fcluster(tree, target, criterion="maxclust") - 1
            large = np.argsort(-np.bincount(labels))[:target]
        centres = _unit(np.stack([X[labels == c].mean(0) for c in large]))
        remap = {int(c): i for i, c in enumerate(large)}
        for c in np.unique(labels):
            if int(c) not in remap:  # too little speech: fold into the nearest large cluster
                remap[int(c)] = int(np.argmax(centres @ _unit(X[labels == c].mean(0))))
        labels = np.array([remap[int(c)] for c in labels])
    centroids = _unit(np.stack([X[labels == k].mean(0) for k in range(labels.max() + 1)]))
    # Every active local speaker -> its nearest centroid; one window's local speakers -> different ones.
    similarity = np.full((*valid.shape, len(centroids)), -np.inf)
    similarity[valid] = _unit(embeddings[valid].astype(np.float64)) @ centroids.T
    for w in np.nonzero(valid.any(1))[0]:
        rows = np.nonzero(valid[w])[0]
        if len(centroids) > 1:
            r, c = linear_sum_assignment(similarity[w, rows], maximize=True)
            hard[w, rows[r]] = c
            rows = np.setdiff1d(rows, rows[r])
        hard[w, rows] = similarity[w, rows].argmax(-1)
    # Active local speakers without an embedding (too few frames) still count as someone: the
    # speaker most present in their window.
    for w, i in zip(*np.nonzero(active & ~valid), strict=True):
        taken = hard[w][hard[w] >= 0]
        hard[w, i] = int(np.bincount(taken).argmax()) if taken.size else 0
    return hard, centroids.astype(np.float32)


def _aggregate(per_window: np.ndarray, step: float, average: bool) -> np.ndarray:
    """Overlap-add of per-window frame values onto the file's frames (pyannote's
    Inference.aggregate without Hamming window or warm-up): (W, 589, C) -> (frames, C); NaN = no value."""
    count, frames, channels = per_window.shape
    first = np.rint(np.arange(count) * step / FRAME_STEP).astype(int)
    total = int(np.rint((WINDOW + (count - 1) * step) / FRAME_STEP)) + 1
    out = np.zeros((total, channels), np.float32)
    hits = np.zeros((total, channels), np.float32)
    known = ~np.isnan(per_window)
    values = np.where(known, per_window, 0).astype(np.float32)
    for w in range(count):
        out[first[w] : first[w] + frames] += values[w]
        hits[first[w] : first[w] + frames] += known[w]
    if average:
        out /= np.maximum(hits, 1e-12)
    out[hits == 0] = 0.0
    return out


def reconstruct(
    activity: np.ndarray, hard: np.ndarray, step: float, max_speakers: int | None = None
) -> list[tuple[float, float, int]]:
    """pyannote's reconstruction (``SpeakerDiarizationMixin.speaker_count``, ``to_diarization``,
    ``to_annotation``), in numpy: each frame's speaker count, then that many speakers with the
    most activity there; a turn runs from the middle of its first frame to the middle of the frame
    after its last. -> [(start, end, speaker index)], sorted."""
    count = np.rint(_aggregate(activity.sum(-1, keepdims=True).astype(np.float32), step, True)[:, 0])
    count = np.minimum(count, max_speakers or 255).astype(int)
    if count.max() == 0 or hard.max() < 0:
        return []
    speakers = int(hard.max()) + 1
    per_speaker = np.full((*activity.shape[:2], speakers), np.nan, np.float32)
    for w in range(len(activity)):
        for k in np.unique(hard[w]):
            if k >= 0:
                per_speaker[w, :, k] = activity[w][:, hard[w] == k].max(1)
    scores = _aggregate(per_speaker, step, False)
    if speakers < count.max():  # more voices at once than speakers: columns that stand for no one
        scores = np.pad(scores, ((0, 0), (0, count.max() - speakers)))
    order = np.argsort(-scores, axis=-1)  # as pyannote sorts (ties included)
    frames, columns = scores.shape
    binary = np.zeros((frames, columns), bool)
    np.put_along_axis(binary, order, np.arange(columns)[None, :] < count[:, None], axis=1)
    middles = FRAME_START + FRAME_DURATION / 2 + FRAME_STEP * np.arange(frames)
    turns = []
    for k in range(columns):
        edges = np.diff(np.concatenate([[0], binary[:, k].astype(np.int8), [0]]))
        for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0], strict=True):
            turns.append((float(middles[a]), float(middles[min(int(b), frames - 1)]), k))
    return sorted(turns)


def global_stage(
    outputs: list[LocalOutput],
    config: DiarizationConfig = DiarizationConfig(),
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
) -> Diarization:
    """Cluster every chunk's local speakers into the file's speakers -> turns (overlap kept),
    speakers named SPEAKER_00, SPEAKER_01, ... in order of first appearance, and their centroids."""
    local = _concatenate(outputs)
    hard, centroids = cluster(local, config, num_speakers, min_speakers, max_speakers)
    duration = local.num_samples / SAMPLE_RATE
    raw = reconstruct(local.activity, hard, local.step, max_speakers=max_speakers or num_speakers)
    # Padding columns (k >= number of centroids) stand for no voice and are dropped.
    raw = [(s, min(e, duration), k) for s, e, k in raw if s < duration and k < len(centroids)]
    names: dict[int, str] = {}
    for _, _, k in raw:
        names.setdefault(k, f"SPEAKER_{len(names):02d}")
    return Diarization(
        turns=[Turn(s, e, names[k]) for s, e, k in raw],
        centroids={name: centroids[k] for k, name in names.items()},
    )


# ---------------------------------------------------------------------------------------- pipeline


class Pipeline:
    """Both stages in one process; ``models.load_diarization("campplus")`` returns one."""

    def __init__(self, models: SpeakerModels, config: DiarizationConfig = DiarizationConfig()):
        self.models = models
        self.config = config

    def __call__(
        self,
        audio: np.ndarray,
        *,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        chunk_seconds: float | None = None,
        hook: Callable[..., None] | None = None,
    ) -> Diarization:
        """Diarize 16 kHz mono float32 samples. ``chunk_seconds`` runs the local stage chunk by
        chunk, as split jobs do (same result); ``hook``: see :func:`local_stage`."""
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if chunk_seconds is None:
            outputs = [local_stage(audio, self.models, self.config, hook=hook)]
        else:
            outputs = []
            for first, count in plan_chunks(audio.size, self.config, chunk_seconds):
                a, b = chunk_audio_range(first, count, audio.size, self.config)
                outputs.append(
                    local_stage(
                        audio[a:b],
                        self.models,
                        self.config,
                        offset=a,
                        first_window=first,
                        count=count,
                        num_samples=audio.size,
                        hook=hook,
                    )
                )
        return global_stage(
            outputs, self.config, num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers
        )

    def voice_embedding(self, audio: np.ndarray) -> np.ndarray | None:
        """An enrolment recording (one voice, 16 kHz mono float32) -> its unit-length embedding in
        the space of ``Diarization.centroids``: the mean of its unit embeddings backed by at least
        ``min_clean`` s of lone speech (all of them when none is). None when no speech is found."""
        local = local_stage(np.asarray(audio, dtype=np.float32).reshape(-1), self.models, self.config)
        return voice_from_local(local, self.config)


def voice_from_local(local: LocalOutput, config: DiarizationConfig) -> np.ndarray | None:
    """:meth:`Pipeline.voice_embedding` from a local stage already run over the recording."""
    valid = ~np.isnan(local.embeddings).any(-1)
    if not valid.any():
        return None
    chosen = valid & (local.clean >= config.min_clean)
    units = _unit(local.embeddings[chosen if chosen.any() else valid].astype(np.float64))
    return _unit(units.mean(0)).astype(np.float32)
