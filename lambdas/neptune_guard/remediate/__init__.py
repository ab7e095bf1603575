"""Remediation: the steps the cluster and snapshot workflows call, one module per stage, and the streams replicator.

Kept free of imports: the replicator function ships only this package's marker and replication.py."""
