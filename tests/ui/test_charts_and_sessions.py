"""The pure parts of the dashboard: SVG charts, formatting, the session reference of a token,
the session key derived from the secret key, and its modules importing on their own."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from cryptography.fernet import Fernet

from tracker import db, tokens
from tracker.db.clock import utc_now
from tracker.settings import Settings
from tracker.ui import charts, formatting
from tracker.webhooks.vault import derive_key

SVG = "{http://www.w3.org/2000/svg}"


def _parsed(markup: str) -> ET.Element:
    return ET.fromstring(
        str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    )


def test_a_bar_chart_scales_bars_to_the_largest_and_escapes_labels() -> None:
    svg = _parsed(
        charts.bar_chart(
            [charts.Bar("<b>done</b>", 10, "completed"), charts.Bar("half", 5)], label="Tasks"
        )
    )
    bars = svg.findall(f"{SVG}rect")
    assert [float(bar.get("width", 0)) for bar in bars] == [350.0, 175.0]
    assert bars[0].get("class") == "fill-completed"
    assert "<b>done</b>" in [text.text for text in svg.findall(f"{SVG}text")]  # as text
    assert svg.find(f"{SVG}title") is not None


def test_a_column_chart_stacks_each_hour_and_skips_zeros() -> None:
    svg = _parsed(
        charts.column_chart(
            [charts.Column("10:00", [("delivered", 3), ("failed", 1)]), charts.Column("11:00", [])],
            label="Deliveries",
        )
    )
    heights = [float(rect.get("height", 0)) for rect in svg.findall(f"{SVG}rect")]
    assert len(heights) == 2
    assert abs(heights[0] - 3 * heights[1]) < 0.01


def test_durations_and_moments_read_as_people_write_them() -> None:
    assert formatting.duration(0.5) == "0.50 s"
    assert formatting.duration(42) == "42 s"
    assert formatting.duration(185) == "3 min 05 s"
    assert formatting.duration(7500) == "2 h 05 min"
    assert formatting.task_url("a/b c") == "/tasks/a%2Fb%20c"
    assert formatting.task_url("x", "tensorslab-image") == "/tasks/x?provider=tensorslab-image"
    assert formatting.media_kind("https://cdn.example.invalid/v.mp4?sig=1", "tensorslab") == "video"
    assert formatting.media_kind("https://cdn.example.invalid/i.PNG", "tensorslab") == "image"
    assert formatting.media_kind("https://cdn.example.invalid/x", "tensorslab-image") == "image"
    assert formatting.media_kind("javascript:alert(1)", "tensorslab") == "link"
    assert not formatting.is_web_url("javascript:alert(1)")
    assert formatting.is_web_url("https://cdn.example.invalid/v.mp4")


def test_a_session_reference_names_one_live_token_only(database_url: str) -> None:
    with db.session_scope(database_url) as session:
        first = tokens.create_token(session, "one", now=utc_now())
        second = tokens.create_token(session, "two", now=utc_now())
    reference = tokens.session_reference(first.secret)
    assert first.secret not in reference
    with db.read_scope(database_url) as session:
        assert tokens.authenticate_reference(session, first.token.id, reference) is not None
        assert tokens.authenticate_reference(session, second.token.id, reference) is None
        assert tokens.authenticate_reference(session, 2**63, reference) is None
    with db.session_scope(database_url) as session:
        tokens.revoke_token(session, first.token.id)
    with db.read_scope(database_url) as session:
        assert tokens.authenticate_reference(session, first.token.id, reference) is None


def test_the_session_key_follows_the_secret_key_and_differs_per_purpose(tmp_path) -> None:
    key = Fernet.generate_key().decode()
    configured = Settings(secret_key=key, data_dir=tmp_path)
    assert derive_key("a", settings=configured) == derive_key("a", settings=configured)
    assert derive_key("a", settings=configured) != derive_key("b", settings=configured)
    assert key.encode() not in derive_key("a", settings=configured)
    from_file = Settings(data_dir=tmp_path / "data")
    made = derive_key("a", settings=from_file)  # the key file is made on first use
    assert (tmp_path / "data" / "secret.key").exists()
    assert derive_key("a", settings=from_file) == made != derive_key("a", settings=configured)


def test_the_dashboards_modules_import_on_their_own_in_a_fresh_interpreter() -> None:
    # tracker.api's app imports tracker.ui, and the routes import tracker.api: importing a part
    # of tracker.ui before tracker.api once found tracker.ui half made (an ImportError).
    for module in ("tracker.ui", "tracker.ui.charts", "tracker.ui.pages"):
        done = subprocess.run(
            [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"import {module}: {done.stderr.strip().splitlines()[-1:]}"
