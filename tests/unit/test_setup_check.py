"""kpl.aws.check_setup and the daemons' start-up: a missing profile, no credentials, no region or an invalid
one stop ``kcl-worker`` (also ``kcl-worker status``) and ``kinesis-agent`` with exit status 78 (EX_CONFIG) and
one line on stderr that names the problem and the fix; no traceback, nothing sent anywhere.

The environment of every case is built from scratch: no credentials but the ones a case sets, shared
files in tmp_path, instance metadata disabled (so no credential lookup leaves the machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kpl.aws import ClientConfig, StaticCredentials, check_setup
from kpl.errors import ConfigurationError

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXIT_CONFIG = 78
KEYS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret"}


def clean_environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    (tmp_path / "config").write_text("[default]\nregion = us-east-1\n")
    env.update(AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               AWS_EC2_METADATA_DISABLED="true")
    env.update(settings)
    return env


CASES = {
    "missing-profile": ({"AWS_PROFILE": "nope", **KEYS},
                        "AWS profile 'nope' (from AWS_PROFILE) does not exist: add it to ~/.aws/config"),
    "no-credentials": ({}, "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    "invalid-region": ({"AWS_DEFAULT_REGION": "us east 1", **KEYS},
                       "AWS region 'us east 1' (from AWS_DEFAULT_REGION) is not a valid region name: set it to"),
    "unknown-region": ({"AWS_DEFAULT_REGION": "mars-1", **KEYS},
                       "AWS region 'mars-1' (from AWS_DEFAULT_REGION) is not an AWS region: set it to a region"),
    "no-region": ({"AWS_CONFIG_FILE": os.devnull, **KEYS},
                  "no AWS region configured: set AWS_DEFAULT_REGION (or region in ~/.aws/config)"),
}


def agent_json(tmp_path: Path) -> Path:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({
        "checkpointFile": str(tmp_path / "checkpoints"), "cloudwatch.emitMetrics": "true",
        "flows": [{"filePattern": str(tmp_path / "app.log"), "kinesisStream": "clicks"}],
    }))
    return path


COMMANDS = {
    "kcl-worker": lambda tmp: [str(BIN / "kcl-worker"), "--stream", "clicks", "--application", "clicks-app",
                               "--processor", "tests.integration.kcl_processors:RecordingProcessor"],
    "kcl-worker status": lambda tmp: [str(BIN / "kcl-worker"), "status", "--application", "clicks-app"],
    "kinesis-agent": lambda tmp: [str(BIN / "kinesis-agent"), "-c", str(agent_json(tmp))],
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_daemons_exit_78_with_one_line_naming_the_problem_and_the_fix(
    command: str, case: str, tmp_path: Path,
) -> None:
    settings, message = CASES[case]
    result = subprocess.run(COMMANDS[command](tmp_path), env=clean_environment(tmp_path, **settings), cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "checkpoints").exists(), "nothing was started"


# --- check_setup in process -----------------------------------------------------------------------


@pytest.fixture
def aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in clean_environment(tmp_path).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_check_setup_raises_configuration_error(case: str, aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in CASES[case][0].items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as raised:
        check_setup({"kinesis": ClientConfig()})
    assert CASES[case][1] in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_profile_from_the_shared_files_passes(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (aws_env / "config").write_text("[profile dev]\nregion = eu-west-1\n")
    (aws_env / "credentials").write_text("[dev]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s\n")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    check_setup({"kinesis": ClientConfig(), "dynamodb": ClientConfig(), "cloudwatch": ClientConfig()})


def test_explicit_credentials_need_nothing_from_the_environment(aws_env: Path) -> None:
    check_setup({"firehose": ClientConfig(region="eu-central-1", credentials=StaticCredentials("AKID", "s"))})


def test_a_role_to_assume_needs_source_credentials(aws_env: Path) -> None:
    arn = "arn:aws:iam::123456789012:role/agent"
    with pytest.raises(ConfigurationError, match=f"no AWS source credentials to assume role {arn} found: set"):
        check_setup({"kinesis": ClientConfig(assume_role_arn=arn)})


def test_a_region_in_the_configuration_is_named_as_such(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    with pytest.raises(ConfigurationError, match=r"AWS region 'eu_west_1' \(from the configuration\) is not a valid"):
        check_setup({"kinesis": ClientConfig(region="eu_west_1")})


def test_any_region_name_is_fine_for_an_endpoint_outside_aws(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "local")
    check_setup({"kinesis": ClientConfig(endpoint_url="http://127.0.0.1:9")})
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    check_setup({"kinesis": ClientConfig(), "dynamodb": ClientConfig()})


def test_a_region_newer_than_botocores_list_passes_when_it_looks_like_one(aws_env: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    check_setup({"kinesis": ClientConfig(region="eu-north-9")})


def test_half_a_key_pair_is_named(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    with pytest.raises(ConfigurationError, match=r"AWS credentials cannot be loaded: .*AWS_SECRET_ACCESS_KEY"):
        check_setup({"kinesis": ClientConfig()})


def test_an_unreadable_config_file_is_named(aws_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    (aws_env / "config").write_text("[default\nregion = us-east-1\n")
    with pytest.raises(ConfigurationError, match=r"the AWS configuration cannot be read: .*config: correct that file"):
        check_setup({"kinesis": ClientConfig()})


@pytest.mark.parametrize("command", ["kcl-worker", "kinesis-agent"])
def test_a_log_file_that_cannot_be_opened_exits_78_with_one_line(command: str, tmp_path: Path) -> None:
    log_file = tmp_path / "no-such-directory" / "daemon.log"
    result = subprocess.run([*COMMANDS[command](tmp_path), "-l", str(log_file)],
                            env=clean_environment(tmp_path, **KEYS), cwd=REPO, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"cannot open the log file: [Errno 2] No such file or directory: '{log_file}'" in result.stderr
