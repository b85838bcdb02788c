"""The sync engine: turns inbound events into state changes and jobs, and runs those jobs.

The domain decides; this package reads and writes storage, calls platforms through the
``StorePlatform`` port and enqueues follow-up jobs in the same transaction as the state change."""
