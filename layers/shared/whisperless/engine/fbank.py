"""Kaldi log-mel filterbank features in numpy: the input CAM++ was trained on.

80 mel bins from 25 ms Povey windows every 10 ms (DC removed, pre-emphasis 0.97, 512-point power
spectrum, bins between 20 Hz and 8 kHz, no dither): ``torchaudio.compliance.kaldi.fbank`` with
``num_mel_bins=80, dither=0.0`` and its other defaults, to float32 rounding (a test compares
them). Written here rather than taken from torchaudio so that diarization runs without torch
(about 550 MB less memory and 3 s less start-up per process).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .audio import SAMPLE_RATE

NUM_MEL_BINS = 80
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
FFT_SIZE = 512  # the frame length rounded up to a power of two
PREEMPHASIS = 0.97
LOW_FREQ = 20.0


def _mel(freq: np.ndarray | float) -> np.ndarray:
    return 1127.0 * np.log(1.0 + freq / 700.0)


@lru_cache(maxsize=1)
def _constants() -> tuple[np.ndarray, np.ndarray]:
    """(Povey window (400,), mel filterbank (256, 80)), computed as Kaldi does."""
    n = np.arange(FRAME_LENGTH, dtype=np.float64)
    # Povey's window: a Hann window (non-periodic) raised to 0.85.
    window = (0.5 - 0.5 * np.cos(2 * np.pi * n / (FRAME_LENGTH - 1))) ** 0.85
    fft_bins = FFT_SIZE // 2
    low, high = _mel(LOW_FREQ), _mel(SAMPLE_RATE / 2)
    delta = (high - low) / (NUM_MEL_BINS + 1)
    left = low + np.arange(NUM_MEL_BINS)[:, None] * delta
    centre, right = left + delta, left + 2 * delta
    mel = _mel(SAMPLE_RATE / FFT_SIZE * np.arange(fft_bins, dtype=np.float64))[None, :]
    banks = np.maximum(0.0, np.minimum((mel - left) / (centre - left), (right - mel) / (right - centre)))
    return window.astype(np.float32), banks.T.astype(np.float32)


def num_frames(num_samples: int) -> int:
    """Frames Kaldi makes of ``num_samples`` (only whole windows: ``snip_edges``)."""
    return max(0, 1 + (num_samples - FRAME_LENGTH) // FRAME_SHIFT)


def frame_centres(count: int) -> np.ndarray:
    """Centre of each frame, in seconds from the first sample."""
    return (FRAME_LENGTH / 2 + FRAME_SHIFT * np.arange(count)) / SAMPLE_RATE


def fbank(audio: np.ndarray, normalise: bool = True) -> np.ndarray:
    """16 kHz samples -> (frames, 80) float32 log-mel energies; mean-normalised over the input
    (as CAM++ was trained) unless ``normalise`` is false."""
    window, banks = _constants()
    x = np.ascontiguousarray(audio, dtype=np.float32)
    n = num_frames(x.size)
    if n == 0:
        return np.zeros((0, NUM_MEL_BINS), np.float32)
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n, FRAME_LENGTH), strides=(x.strides[0] * FRAME_SHIFT, x.strides[0])
    ).copy()
    frames -= frames.mean(axis=1, keepdims=True)
    # Pre-emphasis; Kaldi repeats the first sample as its own predecessor.
    frames[:, 1:] -= PREEMPHASIS * frames[:, :-1].copy()
    frames[:, 0] *= 1.0 - PREEMPHASIS
    frames *= window
    power = np.abs(np.fft.rfft(frames, n=FFT_SIZE, axis=1)) ** 2
    # The Nyquist bin has no weight in any mel filter.
    energies = power[:, : FFT_SIZE // 2].astype(np.float32) @ banks
    feats = np.log(np.maximum(energies, np.finfo(np.float32).eps))
    if normalise:
        feats -= feats.mean(axis=0, keepdims=True)
    return feats.astype(np.float32, copy=False)
