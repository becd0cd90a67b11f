"""Suanli census and job service (FastAPI; built in a later issue).

The top layer: may import `scheduler` and `census_agent`; nothing imports it.
"""
