"""Running tracker: the Celery app and its thin tasks, the embedded broker, and the processes
(worker, beat, API, `up`) with their start-up checks and shutdown."""
