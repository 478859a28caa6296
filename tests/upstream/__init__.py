"""Tests of tracker.upstream."""
