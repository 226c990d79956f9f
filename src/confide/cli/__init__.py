"""The ``confide`` command line (typer): provision, hub, node, task, algorithms, demo."""

from confide.cli._app import app, main

__all__ = ["app", "main"]
