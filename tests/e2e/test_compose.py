"""docker-compose.yml, rendered by Debian's docker-compose 1.29 (`docker-compose config`), and
the Prometheus scrape config it mounts (deploy/prometheus.yml).

Only `config` runs: it validates the file and substitutes the variables without a Docker engine.
Each run gets a clean environment (PATH, HOME and the variables under test) and an empty
`--env-file`, so neither the developer's shell nor a `.env` in the checkout leaks in.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tracker.settings import Settings, env_name

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS_CONFIG = REPO_ROOT / "deploy" / "prometheus.yml"
NOT_INSTALLED = "docker-compose not installed: run `apt-get install docker-compose` (.ci/run does)"

PASSWORD = "s3cret-Pw_1"
API_KEY = "tl-test-key"
SECRETS = {"POSTGRES_PASSWORD": PASSWORD, "TENSORSLAB_API_KEY": API_KEY}
TRACKER_SERVICES = ("migrate", "worker", "webhook-worker", "beat", "api")
# Settings the compose file fixes itself instead of passing through with tracker's default.
SET_BY_COMPOSE = {
    "TRACKER_DATA_DIR",
    "TRACKER_DATABASE_URL",
    "TRACKER_BROKER_URL",
    "TENSORSLAB_API_KEY",
    "TRACKER_API_HOST",
    "TRACKER_API_PORT",
    "TRACKER_WORKER_METRICS_HOST",
    "TRACKER_WORKER_METRICS_PORT",
}
WORKER_SERVICES = ("worker", "webhook-worker")


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        if "CI" in os.environ:
            pytest.fail(NOT_INSTALLED)
        pytest.skip(NOT_INSTALLED)
    return path


def _run_config(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("")
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        **variables,
    }
    command = [
        _docker_compose(),
        "-f",
        str(COMPOSE_FILE),
        "--project-directory",
        str(REPO_ROOT),
        "--env-file",
        str(empty_env_file),
        "config",
    ]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _parse_yaml(text: str) -> dict[str, Any]:
    parsed = yaml.safe_load(text)
    assert isinstance(parsed, dict)
    return parsed


def _render(tmp_path: Path, **variables: str) -> dict[str, Any]:
    result = _run_config(tmp_path, **variables)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return _parse_yaml(result.stdout)


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _healthcheck(service: dict[str, Any]) -> str:
    test = service.get("healthcheck", {}).get("test", [])
    return test if isinstance(test, str) else " ".join(test)


def test_compose_file_renders_the_deployment(tmp_path: Path) -> None:
    config = _render(tmp_path, **SECRETS)
    services = config["services"]

    assert {"postgres", "redis", *TRACKER_SERVICES} <= set(services)
    assert "pg_isready" in _healthcheck(services["postgres"])
    assert "redis-cli ping" in _healthcheck(services["redis"])
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == PASSWORD

    migrate = services["migrate"]
    assert _command(migrate) == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    for name in ("worker", "webhook-worker", "beat", "api"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
    # Polls and webhooks in pools of their own: a slow receiver cannot hold up polling.
    assert _command(services["worker"]) == ["worker", "--queues", "polls", "--concurrency", "4"]
    assert _command(services["webhook-worker"]) == [
        "worker",
        "--queues",
        "webhooks",
        "--concurrency",
        "2",
    ]
    assert _command(services["beat"]) == ["beat"]
    assert _command(services["api"]) == ["api"]
    assert "/healthz" in _healthcheck(services["api"])
    published = services["api"]["ports"][0]
    published = published if isinstance(published, str) else f"{published['published']}"
    assert "8000" in published
    # beat's schedule; workers' metrics, read by the API
    for name in ("beat", "worker", "webhook-worker", "api"):
        volumes = services[name]["volumes"]
        assert any(volume.endswith(":/data") or ":/data:" in volume for volume in volumes), name

    images = {services[name]["image"] for name in TRACKER_SERVICES}
    assert len(images) == 1, f"migrate, worker and beat must run one image, not {images}"

    environment = services["worker"]["environment"]
    assert (
        environment["TRACKER_DATABASE_URL"]
        == f"postgresql+psycopg://tracker:{PASSWORD}@postgres:5432/tracker"
    )
    assert environment["TRACKER_BROKER_URL"] == "redis://redis:6379/0"
    assert environment["TENSORSLAB_API_KEY"] == API_KEY
    assert environment["TRACKER_DATA_DIR"] == "/data"
    assert (environment["TRACKER_API_HOST"], environment["TRACKER_API_PORT"]) == ("0.0.0.0", "8000")
    for name in TRACKER_SERVICES:
        assert services[name]["environment"] == environment, name

    # Each worker serves its own counters inside the compose network, for Prometheus.
    assert environment["TRACKER_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert environment["TRACKER_WORKER_METRICS_PORT"] == "9101"
    for name in WORKER_SERVICES:
        assert [str(port) for port in services[name]["expose"]] == ["9101"], name
        assert "ports" not in services[name], name  # not published on the host
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert f"{PROMETHEUS_CONFIG}:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    published = prometheus["ports"][0]
    published = published if isinstance(published, str) else f"{published['published']}"
    assert published.startswith("127.0.0.1:9090:9090"), published
    assert "/-/ready" in _healthcheck(prometheus)


def test_compose_file_passes_every_setting_through_with_trackers_default(tmp_path: Path) -> None:
    environment = _render(tmp_path, **SECRETS)["services"]["worker"]["environment"]

    for field_name, field in Settings.model_fields.items():
        name = env_name(field_name)
        if name in SET_BY_COMPOSE:
            continue
        assert name in environment, f"{name} is not passed through to the containers"
        default = field.default
        if default is None:  # unset: passed through empty, which means unset too
            assert environment[name] == "", name
        elif isinstance(default, str):
            assert environment[name] == default, name
        else:
            assert float(environment[name]) == float(default), name
    Settings.model_validate(environment)  # the rendered values are a valid configuration


def test_compose_file_takes_overrides_from_the_environment(tmp_path: Path) -> None:
    services = _render(
        tmp_path,
        **SECRETS,
        TRACKER_WORKER_CONCURRENCY="12",
        TRACKER_WEBHOOK_WORKERS="5",
        TRACKER_POLL_MAX_INTERVAL_S="60",
        TENSORSLAB_BASE_URL="http://simulator:8099",
        TENSORSLAB_AUTH_SCHEME="",
    )["services"]

    assert _command(services["worker"]) == ["worker", "--queues", "polls", "--concurrency", "12"]
    assert _command(services["webhook-worker"])[-2:] == ["--concurrency", "5"]
    assert services["webhook-worker"]["environment"]["TRACKER_WEBHOOK_WORKERS"] == "5"
    environment = services["beat"]["environment"]
    assert environment["TRACKER_POLL_MAX_INTERVAL_S"] == "60"
    assert environment["TENSORSLAB_BASE_URL"] == "http://simulator:8099"
    assert environment["TENSORSLAB_AUTH_SCHEME"] == ""  # empty is a valid choice, kept as is


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"POSTGRES_PASSWORD": PASSWORD}, {"TENSORSLAB_API_KEY"}),
        ({"TENSORSLAB_API_KEY": API_KEY}, {"POSTGRES_PASSWORD"}),
        # docker-compose 1.29 stops at the first missing value, so either may be the one named.
        ({}, {"TENSORSLAB_API_KEY", "POSTGRES_PASSWORD"}),
    ],
    ids=["no-api-key", "no-password", "neither"],
)
def test_compose_file_refuses_to_render_without_a_secret(
    tmp_path: Path, given: dict[str, str], named: set[str]
) -> None:
    result = _run_config(tmp_path, **given)

    assert result.returncode != 0, f"rendered without {named}:\n{result.stdout}"
    assert any(name in result.stderr for name in named), result.stderr
    assert not result.stdout.strip()


def test_prometheus_scrapes_the_api_and_every_worker_service_on_their_ports(
    tmp_path: Path,
) -> None:
    services = _render(tmp_path, **SECRETS)["services"]
    environment = services["api"]["environment"]
    jobs = {job["job_name"]: job for job in _scrape_configs()}

    assert jobs["tracker-api"]["static_configs"] == [
        {"targets": [f"api:{environment['TRACKER_API_PORT']}"]}
    ]
    [workers] = jobs["tracker-workers"]["dns_sd_configs"]
    consumers = [name for name, service in services.items() if _command(service)[:1] == ["worker"]]
    assert sorted(workers["names"]) == sorted(consumers) == sorted(WORKER_SERVICES)
    assert workers["type"] == "A"
    assert str(workers["port"]) == environment["TRACKER_WORKER_METRICS_PORT"]


def test_prometheus_drops_from_the_api_only_what_it_scrapes_from_the_workers(
    tmp_path: Path,
) -> None:
    """The API merges the workers' files of the shared volume too: those series, and only those,
    are dropped from its job, so that no sum counts a worker's polls twice."""
    [drop] = _scrape_configs()[0]["metric_relabel_configs"]
    assert (drop["source_labels"], drop["action"]) == (["__name__"], "drop")
    worker_names, database_names = _exposed_names(tmp_path)

    assert {"tracker_polls_total", "tracker_webhook_sends_total"} <= worker_names
    assert {"tracker_tasks", "tracker_transitions_total"} <= database_names
    for name in worker_names:
        assert re.fullmatch(drop["regex"], name), name  # Prometheus anchors its regexes
    for name in database_names:
        assert not re.fullmatch(drop["regex"], name), name


def _exposed_names(tmp_path: Path) -> tuple[set[str], set[str]]:
    """The sample names of the API's /metrics: (from the workers' files, from the database)."""
    from prometheus_client import CollectorRegistry, generate_latest

    from tracker import metrics

    folder = tmp_path / "metrics" / "host" / "1"
    folder.mkdir(parents=True)
    script = (
        "import os, sys; os.environ['PROMETHEUS_MULTIPROC_DIR'] = sys.argv[1]\n"
        "from tracker import metrics\n"
        "metrics.record_polls({'completed': 1}); metrics.record_deliveries({'delivered': 1})\n"
        "metrics._record_latency('tensorslab', 0.1)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True, timeout=60)
    figures = metrics.DatabaseFigures(
        tasks_by_status={"pending": 1},
        due_tasks=1,
        due_lag_s=1.0,
        transitions_by_status={"pending": 1},
        deliveries_by_status={"delivered": 1},
        attempts_by_outcome={"succeeded": 1},
        paused_providers={"tensorslab": "no_credits"},
        pruned_tasks=1,
        heartbeat_age_s={"beat": 1.0},
    )
    names = []
    for collector in (
        metrics._WorkerFilesCollector(tmp_path / "metrics"),
        metrics._DatabaseCollector(figures),
    ):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        text = generate_latest(registry).decode()
        samples = [line for line in text.splitlines() if line and not line.startswith("#")]
        names.append({line.split("{")[0].split()[0] for line in samples})
    return names[0], names[1]


def _scrape_configs() -> list[dict[str, Any]]:
    jobs = _parse_yaml(PROMETHEUS_CONFIG.read_text())["scrape_configs"]
    assert isinstance(jobs, list)
    return jobs
