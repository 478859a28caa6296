"""Tests of tracker.webhooks."""
