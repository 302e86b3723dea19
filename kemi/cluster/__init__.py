"""The cluster: several nodes share registrations, bans and the Record-Route secret (docs/cluster.md).

sync.py      which KDMQ requests a node takes, the contact-count exchange, when a starting
             node's location set is complete (plain functions)
part.py      the KSR part (Cluster / NoCluster): KDMQ from peers, location_complete
settings.py  [cluster]
"""
