"""Pure rules of stocksync: what to sync, how much, when. Imports nothing of ours but itself."""
