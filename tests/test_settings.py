"""tracker.settings: every documented variable is read, bad values and misspelled names are refused
in one readable line that names the variables and never shows the API key."""

from __future__ import annotations

import re
import subprocess
import sys
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support import run_cli
from tracker.errors import ConfigError
from tracker.settings import Settings, SettingsError, env_name, get_settings
from tracker.webhooks.guard import AddressPolicy

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-do-not-print-me-4242"


def _settings() -> Settings:
    get_settings.cache_clear()
    return get_settings()


def _refusal() -> str:
    """The message get_settings() raises with the current environment and .env."""
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as caught:
        get_settings()
    message = str(caught.value)
    assert "\n" not in message
    return message


def _documented_variables() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("\n## Settings\n", 1)[1].split("\n#", 1)[0]
    return re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.MULTILINE)


# -- names ----------------------------------------------------------------------------------------


def test_every_variable_in_the_readme_is_a_setting() -> None:
    documented = _documented_variables()
    known = {env_name(field) for field in Settings.model_fields}

    assert len(documented) > 30
    assert set(documented) <= known


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("TRACKER_QUEUE", "other-install", "queue", "other-install"),
        ("TRACKER_SHUTDOWN_GRACE_S", "3", "shutdown_grace_s", 3.0),
        ("TRACKER_API_PORT", "9000", "api_port", 9000),
        ("tracker_api_port", "9001", "api_port", 9001),  # names are case-insensitive
        ("TRACKER_POLL_MAX_INTERVAL_S", "30", "poll_max_interval_s", 30.0),
        ("TRACKER_WEBHOOK_RETRY_SCHEDULE_S", "5,60", "webhook_retry_schedule_s", (5.0, 60.0)),
        ("TENSORSLAB_BASE_URL", "http://sim:8099/", "tensorslab_base_url", "http://sim:8099"),
        ("TENSORSLAB_AUTH_SCHEME", " Token ", "tensorslab_auth_scheme", "Token"),
        ("TENSORSLAB_READ_TIMEOUT_S", "40", "tensorslab_read_timeout_s", 40.0),
        ("TRACKER_WORKER_METRICS_PORT", "9101", "worker_metrics_port", 9101),
        ("TRACKER_WORKER_METRICS_PORT", " ", "worker_metrics_port", None),  # blank: unset
        ("TRACKER_WORKER_METRICS_HOST", "0.0.0.0", "worker_metrics_host", "0.0.0.0"),
    ],
)
def test_variables_keep_their_names(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, expected: object
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(_settings(), field) == expected


def test_only_the_upstream_settings_have_aliases() -> None:
    assert env_name("queue") == "TRACKER_QUEUE"
    assert env_name("tensorslab_api_key") == "TENSORSLAB_API_KEY"
    for field, info in Settings.model_fields.items():
        assert (info.validation_alias is not None) == field.startswith("tensorslab_"), field


def test_settings_come_from_a_dot_env_file_beside_other_tools_variables() -> None:
    Path(".env").write_text(
        "TRACKER_QUEUE=from-dotenv\nPOSTGRES_PASSWORD=hunter2\nDATABASE_URL=mysql://elsewhere\n"
    )
    assert _settings().queue == "from-dotenv"


def test_the_environment_wins_over_the_dot_env_file(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("TRACKER_QUEUE=from-dotenv\n")
    monkeypatch.setenv("TRACKER_QUEUE", "from-env")
    assert _settings().queue == "from-env"


def test_variable_names_work_as_keyword_arguments_too() -> None:
    assert Settings(TRACKER_QUEUE="by-variable").queue == "by-variable"
    assert Settings(queue="by-field").queue == "by-field"
    assert Settings(tensorslab_base_url="http://a/").tensorslab_base_url == "http://a"
    validated = Settings.model_validate({"TRACKER_QUEUE": "q", "TENSORSLAB_BASE_URL": "http://b"})
    assert (validated.queue, validated.tensorslab_base_url) == ("q", "http://b")


def test_a_misspelled_variable_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKER_POLL_MAX_INTERVALS", "10")
    assert _refusal() == (
        "invalid settings: TRACKER_POLL_MAX_INTERVALS is not a tracker setting; "
        "did you mean TRACKER_POLL_MAX_INTERVAL_S?"
    )


def test_a_misspelled_variable_in_the_dot_env_file_is_refused() -> None:
    Path(".env").write_text("POSTGRES_PASSWORD=hunter2\nTRACKER_WEBHOOK_TIMEOUT=5\n")
    assert _refusal() == (
        "invalid settings: TRACKER_WEBHOOK_TIMEOUT in .env is not a tracker setting; "
        "did you mean TRACKER_WEBHOOK_TIMEOUT_S?"
    )


def test_a_misspelled_prefix_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAKCER_API_PORT", "9000")
    assert _refusal() == (
        "invalid settings: TRAKCER_API_PORT is not a tracker setting; "
        "did you mean TRACKER_API_PORT?"
    )


def test_an_unknown_upstream_variable_is_refused_whatever_its_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("tensorslab_key", "x")
    assert _refusal() == (
        "invalid settings: tensorslab_key is not a tracker setting; "
        "did you mean TENSORSLAB_API_KEY?"
    )


def test_a_tracker_variable_like_no_setting_is_refused_without_a_guess(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKER_COLOUR", "blue")
    assert _refusal() == (
        "invalid settings: TRACKER_COLOUR is not a tracker setting (the README lists them)"
    )


def test_every_misspelling_is_told_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_QUEUES", "a")
    Path(".env").write_text("TRACKER_QUEUES=b\nTRACKER_API_PROT=1\n")
    message = _refusal()
    assert message.count("TRACKER_QUEUES") == 1  # the environment's, told once
    assert "TRACKER_QUEUES is not a tracker setting; did you mean TRACKER_QUEUE?" in message
    assert "TRACKER_API_PROT in .env is not" in message


def test_the_test_suites_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_TEST_POSTGRES_URL", "postgresql://elsewhere/test")
    monkeypatch.setenv("TRACKER_TEST_ANYTHING", "1")
    Path(".env").write_text("TRACKER_TEST_REDIS_URL=redis://elsewhere/14\n")
    assert _settings().queue == "tracker"


def test_docker_composes_own_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_WORKER_CONCURRENCY", "12")
    Path(".env").write_text(
        "TRACKER_API_PUBLISH=0.0.0.0:8000\nTRACKER_IMAGE=tracker:dev\n"
        "TRACKER_PROMETHEUS_PUBLISH=0.0.0.0:9090\n"
    )
    assert _settings().queue == "tracker"


def test_unrelated_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://someone-elses")
    monkeypatch.setenv("API_PORT", "1")
    Path(".env").write_text("POSTGRES_PASSWORD=hunter2\nexport REDIS_URL=redis://x\nLONELY\n")
    assert _settings().api_port == 8000


# -- values ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRACKER_POLL_MAX_INTERVAL_S", "1", "TRACKER_POLL_MIN_INTERVAL_S (5) is larger than "),
        ("TRACKER_POLL_LEASE_S", "10", "TRACKER_POLL_LEASE_S (10) must be at least 70 s"),
        ("TRACKER_WEBHOOK_LEASE_S", "10", "TRACKER_WEBHOOK_LEASE_S (10) must be at least 30 s"),
        ("TENSORSLAB_BASE_URL", "api.tensorslab.com", "TENSORSLAB_BASE_URL must start with http"),
        ("TENSORSLAB_AUTH_SCHEME", "Bear er", "TENSORSLAB_AUTH_SCHEME must be one word"),
        ("TRACKER_BROKER_URL", "amqp://x", "TRACKER_BROKER_URL must be filesystem:// "),
        ("TRACKER_DATABASE_URL", "mysql://x", "TRACKER_DATABASE_URL must be a sqlite:/// "),
        ("TRACKER_TICK_INTERVAL_S", "-1", "TRACKER_TICK_INTERVAL_S: "),
        ("TRACKER_POLL_MIN_INTERVAL_S", "soon", "TRACKER_POLL_MIN_INTERVAL_S: "),
        ("TRACKER_QUEUE", "two words", "TRACKER_QUEUE: "),
        ("TRACKER_SHUTDOWN_GRACE_S", "0", "TRACKER_SHUTDOWN_GRACE_S: "),
        ("TRACKER_WORKER_METRICS_PORT", "0", "TRACKER_WORKER_METRICS_PORT must be a port from "),
        ("TRACKER_WORKER_METRICS_PORT", "70000", "TRACKER_WORKER_METRICS_PORT must be a port "),
        ("TRACKER_WORKER_METRICS_PORT", "ninety", "TRACKER_WORKER_METRICS_PORT must be a port "),
        ("TRACKER_WORKER_METRICS_PORT", "9101.5", "TRACKER_WORKER_METRICS_PORT must be a port "),
        ("TRACKER_WORKER_METRICS_HOST", "", "TRACKER_WORKER_METRICS_HOST: "),
    ],
)
def test_a_bad_value_is_refused_with_its_variables_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    refusal = _refusal()
    assert refusal.startswith("invalid settings: " + message), refusal


def test_all_bad_values_are_told_at_once_by_variable_never_by_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKER_TICK_INTERVAL_S", "-1")
    monkeypatch.setenv("TENSORSLAB_READ_TIMEOUT_S", "long")
    monkeypatch.setenv("TRACKER_QUEUE", "two words")
    message = _refusal()
    problems = message.removeprefix("invalid settings: ").split("; ")
    assert [problem.split(":")[0] for problem in problems] == [
        "TRACKER_QUEUE",
        "TENSORSLAB_READ_TIMEOUT_S",
        "TRACKER_TICK_INTERVAL_S",
    ]
    assert "tick_interval_s" not in message and "tensorslab_read" not in message


def test_a_password_in_a_refused_broker_url_is_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_BROKER_URL", "amqp://guest:hunter2@rabbit:5672//")
    message = _refusal()
    assert "hunter2" not in message and "amqp://guest:***@rabbit:5672//" in message


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u:p@db:5432/tracker", "postgresql+psycopg://u:p@db:5432/tracker"),
        ("postgresql://u@db/tracker", "postgresql+psycopg://u@db/tracker"),
        ("postgresql+psycopg://u@db/tracker", "postgresql+psycopg://u@db/tracker"),
        ("sqlite:////var/lib/tracker.db", "sqlite:////var/lib/tracker.db"),
    ],
)
def test_database_urls(monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    monkeypatch.setenv("TRACKER_DATABASE_URL", url)
    assert _settings().database_url == expected


def test_the_default_database_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    assert _settings().database_url == f"sqlite:///{tmp_path / 'data' / 'tracker.db'}"


def test_a_first_delay_of_zero_polls_right_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_POLL_FIRST_DELAY_S", "0")
    assert _settings().poll_first_delay_s == 0.0
    monkeypatch.setenv("TRACKER_POLL_FIRST_DELAY_S", "-1")
    assert _refusal().startswith("invalid settings: TRACKER_POLL_FIRST_DELAY_S: ")


def test_a_data_dir_that_is_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    monkeypatch.setenv("TRACKER_DATA_DIR", str(a_file))
    assert _refusal() == f"invalid settings: TRACKER_DATA_DIR: {a_file} is a file, not a folder"


def test_reading_the_settings_creates_no_folder(tmp_path: Path) -> None:
    settings = _settings()
    assert settings.data_dir == tmp_path / "data"
    assert settings.broker_folder == tmp_path / "data" / "broker"
    assert settings.uses_embedded_broker
    assert not (tmp_path / "data").exists()


def test_the_retry_schedule_is_read_as_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings().webhook_retry_schedule_s == (5, 300, 1800, 7200, 18000, 36000, 36000)
    monkeypatch.setenv("TRACKER_WEBHOOK_RETRY_SCHEDULE_S", " 5, 300,1800.5 ,")
    assert _settings().webhook_retry_schedule_s == (5.0, 300.0, 1800.5)


def test_an_empty_retry_schedule_means_no_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_WEBHOOK_RETRY_SCHEDULE_S", "")
    assert _settings().webhook_retry_schedule_s == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5,soon", "TRACKER_WEBHOOK_RETRY_SCHEDULE_S must be comma-separated seconds, e.g. "),
        ('["5"]', "TRACKER_WEBHOOK_RETRY_SCHEDULE_S must be comma-separated seconds, e.g. "),
        ("0", "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between 0 and 604800 s"),
        ("5,-1", "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between 0 and 604800 s"),
        ("604801", "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between 0 and 604800 s"),
        ("nan", "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between 0 and 604800 s"),
        (",".join(["1"] * 51), "TRACKER_WEBHOOK_RETRY_SCHEDULE_S: each wait must be between"),
    ],
)
def test_a_bad_retry_schedule_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    monkeypatch.setenv("TRACKER_WEBHOOK_RETRY_SCHEDULE_S", value)
    refusal = _refusal()
    assert refusal.startswith("invalid settings: " + message), refusal


def test_fifty_retries_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKER_WEBHOOK_RETRY_SCHEDULE_S", ",".join(["604800"] * 50))
    assert len(_settings().webhook_retry_schedule_s) == 50


def test_allowed_networks_are_read_as_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings().webhook_allowed_networks == ()
    monkeypatch.setenv("TRACKER_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8, ::1,10.1.2.3,127.0.0.0/8,")
    settings = _settings()
    expected = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"), IPv4Network("10.1.2.3/32"))
    assert settings.webhook_allowed_networks == expected
    assert AddressPolicy.from_settings(settings) == AddressPolicy(expected)
    assert Settings(webhook_allowed_networks="::1").webhook_allowed_networks == expected[1:2]


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("127.0.0.0/8, 10.0.0.1/8", "; did you mean 10.0.0.0/8?"),
        ("localhost", "does not appear to be an IPv4 or IPv6 network"),
        ("10.0.0.0/33", "TRACKER_WEBHOOK_ALLOWED_NETWORKS: '10.0.0.0/33' is not an IP network"),
    ],
)
def test_bad_allowed_networks_are_refused_as_the_guard_words_it(
    monkeypatch: pytest.MonkeyPatch, value: str, hint: str
) -> None:
    monkeypatch.setenv("TRACKER_WEBHOOK_ALLOWED_NETWORKS", value)
    refusal = _refusal()
    with pytest.raises(ValueError) as guard:
        AddressPolicy.from_setting(value)
    assert refusal == f"invalid settings: {guard.value}"
    assert hint in refusal


# -- the API key ----------------------------------------------------------------------------------


def test_the_api_key_is_a_secret_and_blank_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings().tensorslab_api_key is None
    monkeypatch.setenv("TENSORSLAB_API_KEY", SECRET)
    key = _settings().tensorslab_api_key
    assert key is not None and key.get_secret_value() == SECRET
    assert SECRET not in repr(_settings())
    monkeypatch.setenv("TENSORSLAB_API_KEY", "   ")
    assert _settings().tensorslab_api_key is None


def test_the_api_key_never_appears_in_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENSORSLAB_API_KEY", SECRET)
    monkeypatch.setenv("TENSORSLAB_BASE_URL", "nowhere")
    monkeypatch.setenv("TRACKER_POLL_LEASE_S", "1")
    assert SECRET not in _refusal()

    monkeypatch.setenv("TENSORSLAB_APIKEY", SECRET)  # misspelled, in the environment
    Path(".env").write_text(f"TENSORSLAB_API_KY={SECRET}\n")  # and in .env
    message = _refusal()
    assert "TENSORSLAB_APIKEY is not" in message and "TENSORSLAB_API_KY in .env is not" in message
    assert SECRET not in message

    with pytest.raises(ValidationError) as caught:  # straight from pydantic, too
        Settings()
    assert SECRET not in str(caught.value)


# -- the object and its errors --------------------------------------------------------------------


def test_settings_error_belongs_to_the_error_tree() -> None:
    assert issubclass(SettingsError, ConfigError)


def test_get_settings_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    first = _settings()
    monkeypatch.setenv("TRACKER_QUEUE", "changed")
    assert get_settings() is first
    assert _settings().queue == "changed"


def test_the_module_imports_nothing_of_the_domain() -> None:
    code = (
        "import sys, tracker.settings; "
        "print(sorted(m for m in sys.modules if m.startswith('tracker.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "['tracker.errors', 'tracker.settings']"


# -- through the command line ---------------------------------------------------------------------


def test_the_cli_refuses_a_data_dir_that_is_a_file_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    monkeypatch.setenv("TRACKER_DATA_DIR", str(a_file))
    get_settings.cache_clear()

    code, _, err = run_cli("list")

    assert code == 1
    assert err.splitlines() == [
        f"error: invalid settings: TRACKER_DATA_DIR: {a_file} is a file, not a folder"
    ]


def test_the_cli_refuses_a_data_dir_inside_a_file_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    monkeypatch.setenv("TRACKER_DATA_DIR", str(a_file / "data"))  # only opening the database
    get_settings.cache_clear()  # finds out (tracker.db.engine)

    code, _, err = run_cli("list")

    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: cannot create the folder {a_file / 'data'} ")
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["0", "70000", "ninety"])
@pytest.mark.parametrize("command", [("worker",), ("up", "--no-api")])
def test_a_bad_worker_metrics_port_stops_a_worker_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str, command: tuple[str, ...]
) -> None:
    monkeypatch.setenv("TRACKER_WORKER_METRICS_PORT", value)
    get_settings.cache_clear()

    code, _, err = run_cli(*command)

    assert code == 1
    assert err.splitlines() == [
        f"error: invalid settings: TRACKER_WORKER_METRICS_PORT must be a port from 1 to 65535, "
        f"got {value!r}; leave it unset for no metrics port"
    ]
    assert not (tmp_path / "data").exists()  # refused before anything was made


def test_no_worker_serves_metrics_unless_a_port_is_set() -> None:
    settings = _settings()
    assert (settings.worker_metrics_port, settings.worker_metrics_host) == (None, "127.0.0.1")
