"""Store platform adapters: each turns one platform's API into the domain's ``StorePlatform``."""
