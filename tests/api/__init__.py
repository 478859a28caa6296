"""Tests of tracker.api."""
