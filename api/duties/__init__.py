"""Singleton duties (the dispatcher, housekeeping, Kubernetes sync) held under database leases, so that among any
number of service replicas on one database exactly one process acts on each duty at a time.

`api.duties.lease` is the pure state machine (what a process may believe about its own lease, by its own
monotonic clock); `api.duties.store` is the SQL (compare-and-set on the ``leases`` rows, by the database's clock);
`api.duties.elector` is the thread that acquires and renews them.
"""
