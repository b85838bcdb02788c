"""Persistence: tables, database engines, migrations and repositories."""
