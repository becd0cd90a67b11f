"""Suanli scheduler: the job model, routing policy and queue (pure), and the Ray side (config, backend, local
cluster, dispatcher, gang entrypoint).

May import `census_agent` (the tiers), never `api`. The pure modules (`models`, `policy`, `queue`) import no
I/O library (an import-linter contract).
"""
