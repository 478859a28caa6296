"""Operating tracker: process heartbeats, overdue tasks and their likely cause, `tracker doctor`."""
