"""The `suanli` command and the Python SDK (`client`) it is built on.

Runs on a user's machine: imports no FastAPI, SQLAlchemy, Ray or kubernetes at module level (import-linter
holds this), so `suanli --help` and the SDK start fast; `serve` and `up` import the service when they run.
"""
