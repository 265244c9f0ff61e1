"""The `erpsync` command: commands.py (submit, status, results, dead letters, sandbox, demo), ops.py (the
pipeline-wide views and Flower), console.py (exit codes and consoles)."""

from worker.cli.commands import main

__all__ = ["main"]
