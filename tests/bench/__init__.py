"""The benchmarks, at quick sizes: every row is produced (never a speed)."""
