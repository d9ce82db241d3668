"""What each deployment artifact weighs against Lambda's limits, and the transcriber's cold start.

    .venv/bin/python bench/image_size.py [--cpu-torch-wheel PATH] [--json]

Per image target of functions/transcriber/Dockerfile (cpu, gpu): the installed size of the
Python packages its pip lines install (read from the Dockerfile, resolved through what is
installed here: whisperless.local.artifacts) and of the models ``python -m
whisperless.engine.bake`` bakes, against Lambda's 10 GB image limit (uncompressed, all layers).
The base image is not included: it cannot be pulled here.

torch is the one package whose build differs by target. The gpu target's torch comes from the
CUDA 12.8 index; here the installed torch (PyPI's CUDA build) and its nvidia-* wheels stand in
for it. The cpu target's comes from the CPU index: its size is the unpacked size of a CPU wheel
(``--cpu-torch-wheel``, default: a ``torch-*+cpu*.whl`` in $PIP_FIND_LINKS), with that wheel's
own dependencies instead of the CUDA build's.

The API function: its code and the shared layer as ``sam build`` makes it, against Lambda's
250 MB limit for a zip function and its layers (unzipped).

The cold start is the one tests/deploy/test_runtime.py measured last (.cache/deploy/cold-start.json):
``python -m awslambdaric app.handler`` on the image's file system, first and second job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shared"))

from packaging.requirements import Requirement  # noqa: E402

from whisperless.local import artifacts  # noqa: E402

IMAGE_LIMIT = 10 * 1000**3  # Lambda: 10 GB, uncompressed, all layers
ZIP_LIMIT = 250 * 1000**2  # Lambda: 250 MB unzipped, function and layers
COLD_START = ROOT / ".cache" / "deploy" / "cold-start.json"


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def cpu_torch_wheel(given: str | None) -> Path | None:
    if given:
        return Path(given)
    for folder in os.environ.get("PIP_FIND_LINKS", "").split():
        found = sorted(Path(folder).glob("torch-*+cpu*.whl"))
        if found:
            return found[-1]
    return None


def wheel(path: Path) -> tuple[int, list[str]]:
    """Unpacked size of a wheel and its Requires-Dist."""
    with zipfile.ZipFile(path) as archive:
        size = sum(info.file_size for info in archive.infolist())
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    return size, [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


def python_size(dockerfile: artifacts.Dockerfile, target: str, torch_wheel: Path | None) -> dict:
    if target != "cpu":
        packages = dockerfile.packages(target, project=True)
        return {
            "python_bytes": artifacts.install_size(packages.values()),
            "packages": len(packages),
            "torch": f"{packages['torch'].version} as installed here (stands in for the CUDA 12.8 build)",
        }
    if torch_wheel is None:
        return {"python_bytes": None, "torch": "no CPU torch wheel found: pass --cpu-torch-wheel"}
    packages = dockerfile.packages(target, project=True, stop={"torch"})
    size, requires = wheel(torch_wheel)
    wanted = [Requirement(r) for r in requires]
    wanted = [r for r in wanted if r.marker is None or r.marker.evaluate({"extra": ""})]
    others = {name: dist for name, dist in packages.items() if name != "torch"}
    others.update(artifacts.resolve(wanted, any_version=True))  # sizes only: a close version will do
    return {
        "python_bytes": artifacts.install_size(others.values()) + size,
        "packages": len(others) + 1,
        "torch": f"{torch_wheel.name} unpacked ({size / 1e6:.0f} MB)",
    }


def models_size(dockerfile: artifacts.Dockerfile) -> int:
    """What ``python -m whisperless.engine.bake`` writes (the offline models' packages are counted
    with the Python environment)."""
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp) / "task"
        dockerfile.task_root("cpu", task)
        env = {**os.environ, "WHISPERLESS_CACHE": str(Path(tmp) / "models"), "PYTHONPATH": str(task)}
        subprocess.run(
            [sys.executable, "-m", "whisperless.engine.bake"], cwd=task, env=env, check=True, capture_output=True
        )
        return folder_size(Path(tmp) / "models")


def api_size() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        code = folder_size(artifacts.zip_function("api", Path(tmp) / "api"))
        python, packages = artifacts.layer(Path(tmp) / "opt")
        layer = folder_size(python) + artifacts.install_size(packages.values())
    return {"code_bytes": code, "layer_bytes": layer, "limit_bytes": ZIP_LIMIT}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-torch-wheel", help="a torch CPU wheel to size the cpu target's torch by")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    args = parser.parse_args()
    dockerfile = artifacts.Dockerfile()
    models = models_size(dockerfile)
    report: dict = {"images": {}, "api": api_size()}
    for target in ("cpu", "gpu"):
        entry = python_size(dockerfile, target, cpu_torch_wheel(args.cpu_torch_wheel))
        entry["models_bytes"] = models
        entry["limit_bytes"] = IMAGE_LIMIT
        report["images"][target] = entry
    if COLD_START.exists():
        report["cold_start"] = json.loads(COLD_START.read_text())
    if args.json:
        print(json.dumps(report, indent=2))
        return

    def gb(n: int | None) -> str:
        return "?" if n is None else f"{n / 1e9:.2f} GB"

    print("image target   python env   models    total     of 10 GB   torch")
    for target, e in report["images"].items():
        total = None if e["python_bytes"] is None else e["python_bytes"] + e["models_bytes"]
        share = "?" if total is None else f"{100 * total / IMAGE_LIMIT:.0f} %"
        sizes = f"{gb(e['python_bytes']):>10}   {gb(e['models_bytes']):>7}   {gb(total):>7}"
        print(f"{target:<14} {sizes}   {share:>8}   {e['torch']}")
    print("(+ the base image, not measured here)")
    api = report["api"]
    total = api["code_bytes"] + api["layer_bytes"]
    print(
        f"api (zip)      code {api['code_bytes'] / 1e6:.2f} MB + layer {api['layer_bytes'] / 1e6:.1f} MB"
        f" = {total / 1e6:.1f} MB of 250 MB ({100 * total / ZIP_LIMIT:.0f} %)"
    )
    cold = report.get("cold_start")
    if cold:
        t, w = cold["cold_timings"], cold["warm_timings"]
        warm_loads = w.get("load_diarization", 0) + w.get("load_whisper", 0)
        print(
            f"cold start ({cold['measured']}, {cold['machine']}, {cold['audio_seconds']:.0f} s of audio,"
            f" diarized): init {cold['init_seconds']:.1f} s; first job {cold['cold_invocation_seconds']:.1f} s"
            f" (load_diarization {t.get('load_diarization', 0):.1f} s, load_whisper {t.get('load_whisper', 0):.1f} s);"
            f" second job {cold['warm_invocation_seconds']:.1f} s (loads {warm_loads:.2f} s)"
        )
    else:
        print(f"cold start: not measured yet (run: pytest tests/deploy/test_runtime.py; it writes {COLD_START})")


if __name__ == "__main__":
    main()
