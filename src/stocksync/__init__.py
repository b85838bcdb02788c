"""stocksync: keeps products and inventory in sync across online stores."""
