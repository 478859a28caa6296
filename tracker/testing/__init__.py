"""Test doubles shipped with tracker, for its tests, the demo, the benchmarks and yours: the
TensorsLab simulator, a verifying webhook receiver, loopback server plumbing and scratch
PostgreSQL databases."""
