"""The application's writes, as CloudWatch would report them. A sandbox piece, not a correction: moto
emulates no graph engine, so nothing would ever write to a local Neptune cluster.

A cluster registered here "keeps writing": when a snapshot of it is created (the moment the workflow's
write check starts), the sandbox records the datapoints Neptune would publish for a write right after
it: `NumIndexInsertsPerSec` in the `AWS/Neptune` namespace with the `DBClusterIdentifier` dimension
(Neptune sends a metric only when it is non-zero).
https://docs.aws.amazon.com/neptune/latest/userguide/cw-metrics.html
https://docs.aws.amazon.com/neptune/latest/userguide/cw-dimensions.html
"""

from __future__ import annotations

import functools

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.utils import utcnow
from moto.rds import models as rds_models

_writers: set[tuple[str, str, str]] = set()
_installed = False


def keep_writing(account_id: str, region: str, cluster_id: str) -> None:
    _writers.add((account_id, region, cluster_id.lower()))


def stop_all() -> None:
    _writers.clear()


def record_write(account_id: str, region: str, cluster_id: str, value: float = 12.0) -> None:
    cloudwatch_backends[account_id][region].put_metric_data("AWS/Neptune", [{
        "MetricName": "NumIndexInsertsPerSec", "Value": value, "Unit": "Count/Second", "Timestamp": utcnow(),
        "Dimensions": [{"Name": "DBClusterIdentifier", "Value": cluster_id}]}])


def install() -> None:
    global _installed
    if _installed:
        return
    original = rds_models.RDSBackend.create_db_cluster_snapshot

    @functools.wraps(original)
    def create_db_cluster_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type="manual", tags=None):
        snapshot = original(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type, tags)
        if (self.account_id, self.region_name, db_cluster_identifier.lower()) in _writers and snapshot_type == "manual":
            record_write(self.account_id, self.region_name, db_cluster_identifier)
        return snapshot

    rds_models.RDSBackend.create_db_cluster_snapshot = create_db_cluster_snapshot
    _installed = True
