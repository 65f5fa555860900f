"""The database side: models, engine by URL, and the repository the drivers call.

The database is the truth for coupons once persisted; Redis holds the
decision and the queue until then.
"""
