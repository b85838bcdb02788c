"""The HTTP face of stocksync: health, metrics, webhook receivers, REST API and dashboard."""
