"""What tracker creates on disk is its owner's only, whatever the umask: the data folder, the
SQLite file and its -wal/-shm files, the embedded broker's folders, the metrics folder."""

from __future__ import annotations

import contextlib
import importlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import Configure
from tests.support import run_cli
from tracker import db, metrics
from tracker.errors import TrackerError
from tracker.settings import get_settings
from tracker.worker import processes


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask (022): without care, folders come out 0755 and files 0644."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_db_upgrade_makes_an_owner_only_data_folder_and_database(tmp_path: Path) -> None:
    data = tmp_path / "data"  # TRACKER_DATA_DIR (conftest); not there yet
    assert not data.exists()

    code, out, err = run_cli("db", "upgrade")

    assert code == 0, (out, err)
    assert _mode(data) == 0o700
    assert _mode(data / "tracker.db") == 0o600
    # While a connection is open in WAL mode, the -wal and -shm files exist: owner-only too.
    with db.session_scope() as session:
        session.execute(text("SELECT count(*) FROM tracked_tasks"))
        side_files = [data / "tracker.db-wal", data / "tracker.db-shm"]
        assert all(path.exists() for path in side_files)
        assert [_mode(path) for path in side_files] == [0o600, 0o600]


def test_nested_missing_folders_are_all_owner_only(tmp_path: Path, configure: Configure) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'tracker.db'}"
    configure(TRACKER_DATABASE_URL=url)

    code, out, err = run_cli("db", "upgrade")

    assert code == 0, (out, err)
    assert (_mode(tmp_path / "a"), _mode(tmp_path / "a" / "b")) == (0o700, 0o700)
    assert _mode(tmp_path / "a" / "b" / "tracker.db") == 0o600


def test_an_existing_database_file_is_narrowed_to_owner_only(
    tmp_path: Path, configure: Configure
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    path = shared / "old.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    configure(TRACKER_DATABASE_URL=f"sqlite:///{path}")

    code, out, err = run_cli("db", "upgrade")

    assert code == 0, (out, err)
    assert _mode(path) == 0o600
    assert _mode(shared) == 0o755, "a folder that already existed keeps its mode"


def test_the_embedded_broker_folders_are_owner_only(tmp_path: Path) -> None:
    import celeryconfig

    try:
        importlib.reload(celeryconfig)  # it makes the folders when read, for these settings
        broker = tmp_path / "data" / "broker"
        assert _mode(tmp_path / "data") == 0o700
        for folder in (broker, broker / "queue", broker / "processed", broker / "control"):
            assert _mode(folder) == 0o700, folder
    finally:
        get_settings.cache_clear()


def test_the_worker_metrics_folder_is_owner_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "unset")  # restored after the test
    monkeypatch.delenv(metrics.MULTIPROC_ENV)

    metrics.enable_worker_metrics(get_settings())

    folder = metrics.worker_metrics_dir(get_settings())  # data/metrics/<host>/<pid>
    assert folder.is_relative_to(tmp_path / "data")
    levels = (tmp_path / "data", folder.parent.parent, folder.parent, folder)
    assert [_mode(path) for path in levels] == [0o700] * 4


def test_starting_a_process_makes_an_owner_only_data_folder(tmp_path: Path) -> None:
    with contextlib.suppress(TrackerError):  # no database yet: the folder comes first anyway
        processes.preflight(get_settings(), needs_api_key=False)
    assert _mode(tmp_path / "data") == 0o700
