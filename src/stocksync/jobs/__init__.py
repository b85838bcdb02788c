"""Background jobs: one queue interface, an embedded SQLite backend and a procrastinate one."""
