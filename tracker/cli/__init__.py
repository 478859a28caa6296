"""The `tracker` command (typer): one module per group of commands; `app.main` is the entry."""
