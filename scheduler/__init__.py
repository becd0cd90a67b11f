"""Suanli scheduler: workload classes, queue, routing policy and the Ray backend (built in a later issue).

May import `census_agent` (the compute model), never `api`.
"""
