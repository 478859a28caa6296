"""Tests of tracker.tasks."""
