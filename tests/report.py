"""Printed after the test run: reports tests leave behind, and whether PostgreSQL ran."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import PG_ADMIN_URL, _pg_available


def main() -> None:
    reports = Path(os.environ.get("STOCKSYNC_TEST_REPORTS", ".test-reports"))
    for path in sorted(reports.glob("*.txt")):
        print(path.read_text().strip())
    reason = _pg_available()
    if reason is not None:
        print(
            f"NOTE: the PostgreSQL suite was skipped: no server at {PG_ADMIN_URL} ({reason}). "
            "Start PostgreSQL (or set STOCKSYNC_TEST_PG_URL) to run it."
        )


if __name__ == "__main__":
    main()
