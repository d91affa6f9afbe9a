"""Storage of businesses, calls, leads and the delivery outbox (SQLAlchemy 2)."""
