"""The test doubles shipped in tracker.testing."""
