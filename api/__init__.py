"""Suanli census and job service (FastAPI): agents' reports in, census figures out; jobs submitted, queued and
dispatched to the Ray tiers.

The top layer: may import `scheduler` and `census_agent`; nothing imports it.
"""
