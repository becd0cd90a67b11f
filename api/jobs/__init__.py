"""Jobs: the SQL job store behind the dispatcher and the thread that runs the dispatcher in the service.

Independent of ingest, the census and discovery (import-linter holds this); the scheduling logic itself lives
in the `scheduler` package.
"""
