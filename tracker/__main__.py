"""`python -m tracker` is the `tracker` command."""

from tracker.cli.app import main

main()
