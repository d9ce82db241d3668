"""The deployment's artifacts laid out on this machine as AWS would hold them, with no Docker and no
``sam build``: what the deploy tests run and ``bench/image_size.py`` measures.

- :class:`Dockerfile`: the transcriber image, read from ``functions/transcriber/Dockerfile`` per
  build target: the files its ``COPY`` instructions put in the task root (``.dockerignore``
  honoured), its environment, and the Python packages its ``pip`` lines install.
- :func:`python_environment`: a virtual environment holding exactly a set of packages, taken
  from the ones installed here (linked, not copied), so that an import the image's package list
  does not cover fails as it would in the image.
- :func:`zip_function` and :func:`layer`: the API function's code and the shared layer as
  ``sam build`` lays them out (the layer's ``requirements.txt`` installed into ``python/``).

Packages come from this environment because the deploy tests run offline: ``resolve`` follows
each requirement's dependencies through the installed distributions' metadata (what pip would
resolve, given what pip installed here) and refuses a version outside a requirement's specifier.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sysconfig
import tomllib
import venv
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .lambda_host import REPO

DOCKERFILE = REPO / "functions" / "transcriber" / "Dockerfile"
#: What AWS's Lambda base images (public.ecr.aws/lambda/*) set, which the Dockerfile builds on.
LAMBDA_BASE_ENV = {
    "LAMBDA_TASK_ROOT": "/var/task",
    "LAMBDA_RUNTIME_DIR": "/var/runtime",
    "PATH": "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin",
}
#: Docker's own default for images that set none.
DOCKER_BASE_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
#: Lambda's base images start functions with the runtime interface client they ship.
LAMBDA_BASE_PACKAGES = ("awslambdaric",)
#: What the Lambda Python runtime provides to zip functions (their layers must not need to).
LAMBDA_RUNTIME_PACKAGES = ("boto3", "awslambdaric")


# --------------------------------------------------------------------------- packages


class MissingPackage(Exception):
    """A requirement that nothing installed here satisfies."""


def resolve(
    requirements: Iterable[str | Requirement],
    *,
    no_deps: bool = False,
    stop: Iterable[str] = (),
    any_version: bool = False,
) -> dict[str, metadata.Distribution]:
    """{normalized name: installed distribution} for ``requirements`` and (unless ``no_deps``) all
    they depend on, markers evaluated for this interpreter; the dependencies of the packages
    named in ``stop`` are not followed (a build of them other than the one installed here).
    ``any_version``: take what is installed whatever the specifier (to size, not to run)."""
    stopped = {canonicalize_name(name) for name in stop}
    found: dict[str, metadata.Distribution] = {}
    queued: set[tuple[str, str]] = set()  # (distribution, extra) whose dependencies are queued
    pending = [(Requirement(r) if isinstance(r, str) else r) for r in requirements]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        try:
            dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise MissingPackage(f"{requirement} is not installed here") from None
        if not any_version and not requirement.specifier.contains(dist.version, prereleases=True):
            raise MissingPackage(f"{requirement} wanted, {dist.version} installed")
        found[name] = dist
        for extra in ("", *requirement.extras) if not no_deps and name not in stopped else ():
            if (name, extra) in queued:
                continue
            queued.add((name, extra))
            for dependency in map(Requirement, dist.requires or []):
                marker = dependency.marker
                if marker.evaluate({**default_environment(), "extra": extra}) if marker else extra == "":  # type: ignore[dict-item]
                    pending.append(dependency)
    return found


def install_size(dists: Iterable[metadata.Distribution]) -> int:
    """Bytes the distributions' recorded files take where they are installed."""
    total = 0
    for dist in dists:
        for file in dist.files or []:
            path = Path(str(dist.locate_file(file)))
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


def link_distributions(dists: Iterable[metadata.Distribution], site_packages: Path) -> None:
    """Make ``site_packages`` hold exactly ``dists``: symlinks to the installed files, a whole folder
    at once where no other installed distribution has files in it (namespace folders such as
    ``nvidia/`` or ``pyannote/`` are shared, and are linked entry by entry)."""
    wanted: dict[PurePosixPath, Path] = {}
    for dist in dists:
        root = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            if not str(file).startswith(".."):  # scripts in bin/: not importable
                wanted[PurePosixPath(str(file))] = root
    shared: set[tuple[str, ...]] = set()
    for other in metadata.distributions():
        for file in other.files or []:
            path = PurePosixPath(str(file))
            if path not in wanted and not str(file).startswith(".."):
                shared.update(path.parts[:i] for i in range(1, len(path.parts)))
    linked: set[tuple[str, ...]] = set()
    for path, root in sorted(wanted.items()):
        parts = path.parts
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            if prefix in linked:
                break
            target = site_packages.joinpath(*prefix)
            if prefix not in shared or depth == len(parts):
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    target.symlink_to(root.joinpath(*prefix))
                linked.add(prefix)
                break


def python_environment(dest: Path, dists: Iterable[metadata.Distribution]) -> Path:
    """A virtual environment (this interpreter, no pip, no other packages) holding ``dists``;
    returns its ``python``."""
    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(dest)
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(dest), "platbase": str(dest)}))
    link_distributions(dists, site_packages)
    return dest / "bin" / "python"


def project_requirements(spec: str, pyproject: Path = REPO / "pyproject.toml") -> list[Requirement]:
    """``.[extra,...]`` as pip reads it from ``pyproject.toml``: the dependencies and the extras'."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = spec.partition("[")[2].rstrip("]")
    names = [extra.strip() for extra in extras.split(",") if extra.strip()]
    lines = list(project.get("dependencies", []))
    for extra in names:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


# --------------------------------------------------------------------------- the image


@dataclass
class Stage:
    name: str
    base: str
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    #: (sources in the build context, destination in the image)
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    #: (requirement, installed with --no-deps)
    installs: list[tuple[str, bool]] = field(default_factory=list)
    uninstalls: list[str] = field(default_factory=list)
    #: stages it copies files from (``COPY --from``)
    copies_from: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)

    @property
    def task_root(self) -> str:
        return self.env["LAMBDA_TASK_ROOT"]

    def environment(self, paths: dict[str, Path]) -> dict[str, str]:
        """The stage's environment with image paths moved to where they are on this machine
        (``{"/var/task": task_root, ...}``), in lists such as ``PATH`` too."""

        def move(item: str) -> str:
            for image_path, here in sorted(paths.items(), key=lambda kv: -len(kv[0])):
                if item == image_path or item.startswith(image_path.rstrip("/") + "/"):
                    return str(here) + item[len(image_path.rstrip("/")) :]
            return item

        return {name: ":".join(move(item) for item in value.split(":")) for name, value in self.env.items()}


class Dockerfile:
    """The build stages of a Dockerfile, as far as the deployment depends on them."""

    def __init__(self, path: Path = DOCKERFILE, context: Path = REPO):
        from dockerfile_parse import DockerfileParser
        from dockerfile_parse.util import WordSplitter, extract_key_values

        self.path, self.context = path, context
        self.stages: dict[str, Stage] = {}
        parser = DockerfileParser(path=str(path))
        args: dict[str, str] = {}
        stage: Stage | None = None
        for instruction in parser.structure:
            kind, value = instruction["instruction"], instruction["value"]
            if kind == "ARG":
                for key, val in extract_key_values(True, args, stage.env if stage else {}, value):
                    args.setdefault(key, val)
            elif kind == "FROM":
                words = list(WordSplitter(value, args=args, envs={}).split())
                base = words[0]
                if base in self.stages:
                    env = dict(self.stages[base].env)
                else:
                    env = dict(LAMBDA_BASE_ENV if base.startswith("public.ecr.aws/lambda/") else DOCKER_BASE_ENV)
                name = words[2] if len(words) > 2 and words[1].upper() == "AS" else base
                stage = self.stages[name] = Stage(name, base, env)
            elif stage is None:
                continue
            elif kind == "ENV":
                stage.env.update(extract_key_values(True, args, stage.env, value))
            elif kind == "WORKDIR":
                stage.workdir = os.path.join(stage.workdir, WordSplitter(value, args, stage.env).dequote())
            elif kind == "COPY":
                words = list(WordSplitter(value, args=args, envs=stage.env).split())
                source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
                if source_stage:
                    stage.copies_from.append(source_stage)
                    continue
                words = [word for word in words if not word.startswith("--")]
                stage.copies.append((words[:-1], os.path.join(stage.workdir, words[-1])))
            elif kind == "RUN":
                self._pip(stage, WordSplitter(value, args, stage.env).dequote())
            elif kind in ("ENTRYPOINT", "CMD"):
                setattr(stage, kind.lower(), json.loads(value))

    @staticmethod
    def _pip(stage: Stage, script: str) -> None:
        for command in script.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["python", "-m"]:
                words = words[2:]
            if words[:2] == ["pip", "uninstall"]:
                stage.uninstalls += [w for w in words[2:] if not w.startswith("-")]
            if words[:2] != ["pip", "install"]:
                continue
            no_deps, skip_next = "--no-deps" in words, False
            for word in words[2:]:
                if skip_next:
                    skip_next = False
                elif word in ("--index-url", "-i", "--extra-index-url", "--target", "-t", "-c", "-r"):
                    skip_next = True
                elif not word.startswith("-"):
                    stage.installs.append((word, no_deps))

    def stage(self, target: str) -> Stage:
        return self.stages[target]

    def packages(
        self, target: str, *, project: bool = False, build: bool = False, stop: Iterable[str] = ()
    ) -> dict[str, metadata.Distribution]:
        """What the target's ``pip`` lines leave installed, in its build stage and the stages it
        copies from (``COPY --from``: the gpu target's virtual environment), less what they
        uninstall; the runtime interface client of a Lambda base image too. ``project``: the
        project's own distribution as well (its code runs from the task root). ``build``: what
        is installed while the image builds (before the uninstalls). ``stop``: as for :func:`resolve`."""
        stages, pending = [], [target]
        while pending:  # the target, the stages it is built FROM and those it copies from
            stage = self.stages[pending.pop()]
            if stage not in stages:
                stages.append(stage)
                pending += [name for name in [stage.base, *stage.copies_from] if name in self.stages]
        found: dict[str, metadata.Distribution] = {}
        for stage in stages:
            for spec, no_deps in stage.installs:
                if spec.startswith("."):
                    requirements = project_requirements(spec, self.context / "pyproject.toml")
                    found.update(resolve(requirements, no_deps=no_deps, stop=stop))
                else:
                    found.update(resolve([spec], no_deps=no_deps, stop=stop))
            for name in stage.uninstalls if not build else ():
                found.pop(canonicalize_name(name), None)
        if self.stages[target].base.startswith("public.ecr.aws/lambda/"):
            found.update(resolve(LAMBDA_BASE_PACKAGES))
        if not project:
            found.pop(
                canonicalize_name(tomllib.loads((self.context / "pyproject.toml").read_text())["project"]["name"]), None
            )
        return found

    def task_root(self, target: str, dest: Path) -> list[str]:
        """Copy into ``dest`` what the target's ``COPY`` instructions put under its task root
        (``.dockerignore`` applied as Docker applies it); returns the copied paths, relative."""
        from docker.utils.build import exclude_paths

        stage = self.stages[target]
        ignore = self.context / ".dockerignore"
        patterns = [line for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
        in_context = set(exclude_paths(str(self.context), patterns))
        copied: list[str] = []
        root = stage.task_root.rstrip("/") + "/"
        for sources, destination in stage.copies:
            if not (destination.rstrip("/") + "/").startswith(root):
                continue
            inside = dest / (destination.rstrip("/") + "/")[len(root) :]
            for source in sources:
                origin = self.context / source
                files = sorted(origin.rglob("*")) if origin.is_dir() else [origin]
                for file in files:
                    relative = file.relative_to(self.context).as_posix()
                    if not file.is_file() or relative not in in_context:
                        continue
                    # COPY of a folder copies its contents; of a file, the file into the folder
                    # (destination ending in /) or to the destination path itself.
                    if origin.is_dir():
                        target_path = inside / file.relative_to(origin)
                    elif destination.endswith("/"):
                        target_path = inside / file.name
                    else:
                        target_path = inside
                    target_path.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, target_path)
                    copied.append(target_path.relative_to(dest).as_posix())
        return copied


# --------------------------------------------------------------------------- zip function and layer


def zip_function(function: str, dest: Path) -> Path:
    """``functions/<function>/`` as ``sam build`` packs a zip function's code (its task root)."""
    shutil.copytree(REPO / "functions" / function, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def layer(dest: Path, content: Path = REPO / "layers" / "shared") -> tuple[Path, dict[str, metadata.Distribution]]:
    """The shared layer as ``sam build`` (BuildMethod python3.x) makes it: ``python/`` holding the
    folder's contents and its ``requirements.txt`` installed; Lambda puts it at ``/opt``. Returns
    the ``python/`` folder and the installed distributions."""
    python = dest / "python"
    shutil.copytree(content, python, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    lines = [line.split("#")[0].strip() for line in (content / "requirements.txt").read_text().splitlines()]
    dists = resolve(line for line in lines if line)
    link_distributions(dists.values(), python)
    return python, dists
