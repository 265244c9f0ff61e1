"""The `erpsync` command: commands.py (submit, status, results, dead letters, sandbox, demo), ops.py (the
pipeline-wide views and Flower), console.py (exit codes and consoles); `python -m worker.cli` runs it."""

from worker.cli.commands import main

__all__ = ["main"]
