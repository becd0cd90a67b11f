"""The census: rollup arithmetic (pure), the queries the routes and metrics read, rollup deltas, liveness.

Reads and writes only the census tables (`nodes`, `rollups`, `snapshots`); knows nothing of jobs, ingest
transport or Kubernetes. `arithmetic` is pure: no database, no I/O.
"""
