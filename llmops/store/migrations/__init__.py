"""Alembic migrations of the store's tables: `runner.py` runs them, `versions/` holds them."""
