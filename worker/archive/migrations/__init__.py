"""Alembic's environment and revisions for the archive (worker/archive/database.py runs them)."""
