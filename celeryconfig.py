"""Celery settings, read by `tracker.worker.celery_app`. Values come from tracker's settings.

With the embedded default (`TRACKER_BROKER_URL=filesystem://`) messages are files under
`$TRACKER_DATA_DIR/broker/`; no server is needed, for one machine. With `redis://...`, Redis
carries the messages. Either way the broker only carries work in flight: the database knows
what is due, so a lost message costs one lease period, never a task.
"""

from __future__ import annotations

from typing import Any

from tracker.db.engine import make_private_folder as _make_private_folder
from tracker.settings import get_settings

_settings = get_settings()

broker_url = _settings.broker_url
task_default_queue = _settings.queue
broker_connection_retry_on_startup = True
broker_transport_options: dict[str, Any] = {}
if _settings.uses_embedded_broker:
    # Not `from tracker import broker_transport`: every name here is read as a Celery setting.
    import tracker.worker.embedded_broker as _embedded

    _embedded.register()
    # kombu's filesystem transport, made safe; the host name only spares kombu's warning
    # "No hostname was supplied" (the transport has no use for one).
    broker_url = f"{_embedded.ALIAS}://localhost//"
    _folder = _settings.broker_folder.resolve()
    for _name in ("queue", "processed", "control"):
        # The transport needs them to exist; messages are only the owner's to read (0700).
        _make_private_folder(_folder / _name)
    broker_transport_options = {
        "data_folder_in": str(_folder / "queue"),
        "data_folder_out": str(_folder / "queue"),
        "processed_folder": str(_folder / "processed"),
        "control_folder": str(_folder / "control"),
        "store_processed": False,
        "polling_interval": 0.1,  # seconds between looks at the folder (kombu's default: 1)
    }
else:
    # Never let Redis hold a message for hours; waiting happens in the database.
    broker_transport_options = {"visibility_timeout": 3600}

task_serializer = "json"
accept_content = ["json"]
task_ignore_result = True
result_backend = None
timezone = "UTC"
enable_utc = True
worker_prefetch_multiplier = 1
# No tracker task acknowledges late, so this cancels nothing; set, it spares the
# CPendingDeprecationWarning Celery prints at each lost broker connection otherwise.
worker_cancel_long_running_tasks_on_connection_loss = True
worker_hijack_root_logger = False
worker_redirect_stdouts = False
worker_send_task_events = False
task_send_sent_event = False

# Two queues, so that webhooks cannot starve polling (a receiver that answers slowly but
# honestly used to hold every worker process): ticks and poll batches on TRACKER_QUEUE, webhook
# deliveries on TRACKER_QUEUE.webhooks, each consumed by a pool of its own under `tracker up`
# and docker-compose (`tracker worker --queues`; a plain `tracker worker` consumes both).
# Ticks stay with the polls: a tick claims poll batches first, and a worker that polls is always
# there to take it. Within the poll queue, ticks are taken before batches: a tick queued behind a
# backlog of batches would expire unseen (nothing new is claimed until the backlog is gone). On
# Redis a message's priority picks the list it waits in and 0 (the default: ticks) is taken
# first; the embedded broker ignores priorities.
task_routes = {
    "tracker.tick": {"queue": _settings.poll_queue},
    "tracker.poll": {"queue": _settings.poll_queue, "priority": 6},
    "tracker.deliver": {"queue": _settings.webhook_queue},
    "tracker.prune": {"queue": _settings.poll_queue, "priority": 9},
    "tracker.learn": {"queue": _settings.poll_queue, "priority": 9},
}

beat_schedule = {
    "tick": {
        "task": "tracker.tick",
        "schedule": _settings.tick_interval_s,
        # A tick that waited longer than a few intervals is stale; the next one does its job.
        "options": {"expires": max(_settings.tick_interval_s * 5, 5.0)},
    },
    # Retention (TRACKER_RETENTION_DAYS): checked hourly, run daily. The database records
    # when the last prune began, so two beats or a restarted beat still prune once a day.
    "prune": {"task": "tracker.prune", "schedule": 3600.0, "options": {"expires": 3000.0}},
    # The adaptive schedule (TRACKER_POLL_SCHEDULE): learn from the tasks completed since the
    # last refresh (tracker/tasks/learning.py; the database keeps where it stopped).
    "learn": {"task": "tracker.learn", "schedule": 30.0, "options": {"expires": 25.0}},
}
beat_schedule_filename = str((_settings.data_dir / "celerybeat-schedule").resolve())
