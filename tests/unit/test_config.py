"""One configuration surface: every environment variable is read by whisperless.config alone,
validated when read, and documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from whisperless import config
from whisperless.config import EngineSettings, Settings
from whisperless.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "shared" / "whisperless"


def test_every_variable_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = {**config.variables(EngineSettings), **config.variables(Settings)}
    missing = sorted(name for name in names if f"`{name}`" not in readme)
    assert not missing, f"README.md does not document {missing}"


def test_only_config_reads_the_environment():
    # The local stack (local/) plays the deployer: it writes the functions' environment, and a
    # caller's variables stand in for template parameters. Everything else asks config.
    reads = re.compile(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(|environ\.get\(")
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("config.py", "__init__.py")
        and "local" not in path.parts
        and reads.search(path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "cls, variable, value",
    [
        (EngineSettings, "WHISPERLESS_BEAM_SIZE", "five"),
        (EngineSettings, "WHISPERLESS_BEAM_SIZE", "0"),
        (EngineSettings, "WHISPERLESS_OFFLINE", "maybe"),
        (Settings, "MAX_RECEIVE_COUNT", "-1"),
        (Settings, "RESULT_WAIT_SECONDS", "soon"),
    ],
)
def test_a_bad_value_stops_the_process_naming_the_variable(cls, variable, value):
    with pytest.raises(ConfigError) as err:
        cls.from_env({variable: value})
    assert variable in err.value.message or err.value.field in variable.lower()


def test_values_are_typed_and_defaults_fill_the_rest():
    engine = EngineSettings.from_env(
        {"WHISPERLESS_BEAM_SIZE": "2", "WHISPERLESS_OFFLINE": "true", "WHISPERLESS_BATCH_SIZE": ""}
    )
    assert (engine.beam_size, engine.offline, engine.batch_size, engine.whisper_model) == (2, True, None, "base")
    assert EngineSettings.from_env({"HF_HUB_OFFLINE": "1"}).offline
    deployment = Settings.from_env({"DEFAULT_LANGUAGE": "de", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert deployment.defaults == {"language": "de"} and deployment.region == "eu-west-1"
