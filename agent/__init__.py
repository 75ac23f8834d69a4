"""The compute-plane agent: follows what Shipyard deployed in one cluster and reports it.

It stands alone: the kubernetes client, httpx and the protocol definitions
(contract.protocol); it never imports gitops or webapp.
"""
