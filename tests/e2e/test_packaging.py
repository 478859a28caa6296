"""tracker works as a plain wheel, far from the clone: the migrations travel inside the package.

The wheel is built from a copy of the repository (so nothing is written into the clone: no
build/, no egg-info), installed with `--no-deps` into a fresh virtualenv outside the repository,
and run from a folder outside it too. The fresh virtualenv sees the dependencies already
installed for the tests through a `.pth` file that lists their site-packages folders, as plain
paths: the `.pth` files inside those folders (the developers' editable install of tracker among
them) are not processed, so the only tracker it can import is the wheel's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a fresh clone would not have, or what a build must not pick up.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.py[cod]",
    ".*cache",
    ".hypothesis",
    ".tracker*",
    ".env",
    "celerybeat-schedule*",
)
PIP = (sys.executable, "-m", "pip")
WHERE = "import tracker, tracker.db.migrate as m; print(tracker.__file__, m.script_location())"
MIN_SETUPTOOLS = 77  # pyproject's build-system: `license` as an SPDX string


@dataclass(frozen=True)
class Installed:
    source: Path  # the copy of the repository the wheel was built from
    wheel: Path
    venv: Path
    python: Path
    site_packages: Path


def _run(
    args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group; whatever it leaves behind is killed after."""
    process = subprocess.Popen(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{args} did not finish within {timeout} s:\n{output}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # children it may have left running
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def _check(
    args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> str:
    result = _run(args, cwd=cwd, env=env, timeout=timeout)
    assert result.returncode == 0, f"{args} exited {result.returncode}:\n{result.stdout}"
    return result.stdout


def _dependency_folders() -> list[str]:
    """The site-packages folders this interpreter imports the dependencies from."""
    paths = sysconfig.get_paths()
    folders = [paths["purelib"], paths["platlib"]]
    # And any it reaches through a .pth of its own (a virtualenv layered on another).
    folders += [
        entry for entry in sys.path if Path(entry).name in ("site-packages", "dist-packages")
    ]
    unique: list[str] = []
    for folder in folders:
        resolved = Path(folder).resolve()
        # Only site-packages folders: never the clone itself, whose tracker/ must stay unseen
        # (the clone's own .venv, as in CI, is fine: it holds no tracker but a finder .pth,
        # which a plain path in a .pth does not run).
        if resolved.is_dir() and resolved != REPO_ROOT and str(resolved) not in unique:
            unique.append(str(resolved))
    return unique


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """The wheel built from the repository, installed into a fresh virtualenv outside it."""
    setuptools = metadata.version("setuptools")
    if int(setuptools.split(".")[0]) < MIN_SETUPTOOLS:
        pytest.fail(
            f"setuptools {setuptools} is too old to build tracker without build "
            f"isolation; `pip install -e .[dev]` brings setuptools>={MIN_SETUPTOOLS}"
        )
    base = tmp_path_factory.mktemp("packaging")
    try:
        source = base / "source"
        shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE, symlinks=True)
        wheels = base / "wheels"
        _check(
            [
                *PIP,
                "wheel",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
                "-w",
                wheels,
                source,
            ],
            cwd=base,
            timeout=300,
        )
        (wheel,) = wheels.glob("tracker-*.whl")

        venv = base / "venv"
        _check([sys.executable, "-m", "venv", "--without-pip", venv], cwd=base)
        python = venv / "bin" / "python"
        # Installed before the .pth exists, so pip sees no tracker at all in the new venv.
        _check(
            [*PIP, "--python", python, "install", "--no-deps", "--no-index", wheel],
            cwd=base,
            timeout=300,
        )
        site_packages = Path(
            _check(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=base,
            ).strip()
        )
        (site_packages / "test-dependencies.pth").write_text(
            "".join(f"{folder}\n" for folder in _dependency_folders())
        )
        yield Installed(source, wheel, venv, python, site_packages)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_wheel_holds_every_module_and_the_migrations(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    source = installed.source
    expected = {
        path.relative_to(source).as_posix() for path in (source / "tracker").rglob("*.py")
    } | {"tracker/py.typed", "celeryconfig.py"}
    migrations = source / "migrations"
    expected |= {
        "tracker/migrations/" + path.relative_to(migrations).as_posix()
        for path in migrations.rglob("*")
        if path.suffix in (".py", ".mako")
    }
    assert "tracker/migrations/env.py" in expected
    assert "tracker/migrations/script.py.mako" in expected
    assert any(name.startswith("tracker/migrations/versions/") for name in expected)
    # A subpackage missing from pyproject's `packages` list shows up here.
    assert sorted(expected - names) == []
    assert not [name for name in names if name.startswith("migrations/")]


def test_the_installed_wheel_migrates_and_runs_the_demo_outside_the_clone(
    installed: Installed, tmp_path: Path
) -> None:
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    assert not workdir.resolve().is_relative_to(REPO_ROOT)
    data_dir = tmp_path / "data"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TRACKER_", "TENSORSLAB_", "PYTHON", "VIRTUAL_ENV"))
    }
    env["PATH"] = f"{installed.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["TRACKER_DATA_DIR"] = str(data_dir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    script = installed.venv / "bin" / "tracker"

    output = _check([script, "db", "upgrade"], cwd=workdir, env=env)
    database = data_dir / "tracker.db"
    assert database.is_file(), output
    with contextlib.closing(sqlite3.connect(database)) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert revision == ScriptDirectory(str(installed.source / "migrations")).get_current_head()
    assert {"tracked_tasks", "task_transitions", "webhook_endpoints"} <= tables

    # The tracker those commands import is the wheel's, with the migrations inside it.
    assert script.read_text().splitlines()[0] == f"#!{installed.python}"
    where = _check([installed.python, "-c", WHERE], cwd=workdir, env=env).split()
    assert [Path(line) for line in where] == [
        installed.site_packages / "tracker" / "__init__.py",
        installed.site_packages / "tracker" / "migrations",
    ]

    # The demo runs the simulator, `tracker up` in a child process and the migrations again.
    output = _check([script, "demo", "--timeout", "120"], cwd=workdir, env=env, timeout=200)
    assert "demo-720p-5s" in output
    assert (workdir / ".tracker-demo" / "tracker.db").is_file()
    # Passed: nothing here is needed any more (a failure keeps it, logs included, to look at).
    shutil.rmtree(workdir)
    shutil.rmtree(data_dir)
