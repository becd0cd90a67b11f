"""The audit chain (数据溯源): an append-only, hash-chained record of every privileged act and of every group
commit of reports, kept in the service's own database.

`api.audit.chain` is the pure part (canonical form, hashes, the walk that finds the first break); `api.audit.log`
appends entries inside the transaction of the act they record, lists them and verifies the stored chain.
"""
