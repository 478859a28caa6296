"""Tests of tracker.db."""
