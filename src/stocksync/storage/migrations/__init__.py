"""Alembic migrations (run by ``stocksync migrate``)."""
