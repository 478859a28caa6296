"""Tests that start real tracker processes: end to end, shutdown, the packaged wheel, compose."""
