"""Printed after the test run: says plainly when the PostgreSQL suite did not run."""

from __future__ import annotations

from tests.conftest import PG_ADMIN_URL, _pg_available


def main() -> None:
    reason = _pg_available()
    if reason is not None:
        print(
            f"NOTE: the PostgreSQL suite was skipped: no server at {PG_ADMIN_URL} ({reason}). "
            "Start PostgreSQL (or set STOCKSYNC_TEST_PG_URL) to run it."
        )


if __name__ == "__main__":
    main()
