"""Tracked tasks: registering, querying, polling, deciding what an answer means, stats."""
