"""Suanli census agent: everything about one node.

Inventory model, collectors (the only code that touches the machine), the pure compute model (peak FLOPS per
precision, tier), and the agent process that pushes reports and exports Prometheus metrics.  This package
must never import the service (`api`) or the scheduler, nor Ray, FastAPI or SQLAlchemy: it is what runs on
every node.
"""

__version__ = "0.1.0"
