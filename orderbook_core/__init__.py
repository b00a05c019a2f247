"""A pure, deterministic matching engine: price-time priority with exact integer ticks and lots."""
