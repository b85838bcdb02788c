"""`python -m stocksync.sandbox`: the sandbox on its own (the same as `stocksync sandbox`)."""

from stocksync.sandbox.cli import main

main()
