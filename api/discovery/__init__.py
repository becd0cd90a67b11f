"""Kubernetes discovery: Nodes read from a cluster's API turned into census inventories and recorded.

`nodes` is pure (a Node document to a `NodeInventory`); `client` lists Nodes with the official client; `sync`
runs one pass; `record` stores the result beside the agents' reports without ever replacing an agent's node.
"""
