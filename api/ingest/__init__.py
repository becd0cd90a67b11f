"""Ingest: an agent's report in, node state, history and rollups out.

`pricing` validates and prices a report (pure: no database, no network, so it can run in a worker process);
`writer` stores priced reports in group commits; `pool` runs pricing (and, on an SQLite file, storing) in
worker processes, which `supervisor` keeps running (it knows nothing of reports). Knows nothing of jobs or the
HTTP layer.
"""
