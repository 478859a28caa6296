"""tracker's test suite."""
