"""Suanli scheduler: the job model, routing policy, queue and dispatcher (pure), and the Ray side.

Pure (an import-linter contract; no Ray, no HTTP, no database): `models` (the job model and the plain values Ray's
answers become), `policy` (routing), `queue` (one scheduling pass), `config` (the TOML file), `dispatcher` (the
lifecycle, against the `Backend` and `JobStore` protocols) and `slicing` (one machine as per-tier raylets). The
Ray side: `ray_backend` (the Jobs API per tier), `local_cluster` (starting and stopping raylets on this machine)
and `gang` (the entrypoint of a multi-node job, run inside Ray).

May import `census_agent` (the tiers, the label keys), never `api`.
"""
