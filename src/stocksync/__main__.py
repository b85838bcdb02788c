from stocksync.cli import main

main()
