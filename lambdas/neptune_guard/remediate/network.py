"""How the streams path's replicator reaches the clusters without changing any security group or any cluster.

The clusters (the original, and the new one restored with the same security groups) already admit the application.
The replicator's network interfaces go where the application's would: into a security group the clusters' groups
admit on the cluster's port (the clusters' own group if it admits itself, else a group one of their rules names), or
into the subnets an admitted address range holds. A connection needs an ingress rule of the destination and an
egress rule of one of the source's groups (security groups are stateful: the answer needs no rule); the replicator's
own group, made with the execution, keeps the outbound rule a new group has, so egress is never what is missing.
Lambda takes 16 subnets at most: the first 16 of those that qualify.
https://docs.aws.amazon.com/vpc/latest/userguide/vpc-security-groups.html
https://docs.aws.amazon.com/neptune/latest/userguide/get-started-vpc.html
https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html

Only IPv4 address ranges and group references count: prefix lists and IPv6 ranges are not read, so a cluster
admitting the application only through them is planned on the freeze path, and the plan says why.
"""

from __future__ import annotations

import ipaddress

LAMBDA_SUBNETS = 16  # https://docs.aws.amazon.com/lambda/latest/api/API_VpcConfig.html (SubnetIds: at most 16)


def _on_port(permission: dict, port: int) -> bool:
    protocol = str(permission.get("IpProtocol"))
    return protocol == "-1" or (protocol in ("tcp", "6") and permission.get("FromPort", 0) <= port <= permission.get("ToPort", -1))


def _network(cidr: str):
    try:
        return ipaddress.IPv4Network(cidr, strict=False)
    except ValueError:
        return None


def replicator_reach(port: int, vpc_id: str, cluster_groups: list[dict], other_groups: list[dict], subnets: list[dict]) -> dict | None:
    """Where the replicator's interfaces go so that the clusters admit them, or None when nothing their security
    groups admit could hold them. `cluster_groups` and `other_groups` are DescribeSecurityGroups results (the
    clusters' groups; the groups their rules name), `subnets` DescribeSubnets results of the cluster's subnet group."""
    cluster_ids = {g["GroupId"] for g in cluster_groups}
    ranges = {s["SubnetId"]: _network(s.get("CidrBlock") or "") for s in subnets}  # an IPv6-only subnet has none
    admitted_groups, admitted_ranges = set(), []
    for group in cluster_groups:
        for permission in group.get("IpPermissions", []):
            if _on_port(permission, port):
                admitted_groups |= {p["GroupId"] for p in permission.get("UserIdGroupPairs", []) if p.get("GroupId")}
                admitted_ranges += [n for n in (_network(r.get("CidrIp", "")) for r in permission.get("IpRanges", [])) if n is not None]
    known = {g["GroupId"]: g for g in [*cluster_groups, *other_groups]}
    for group_id in sorted(admitted_groups, key=lambda g: (g not in cluster_ids, g)):  # the clusters' own group first
        group = known.get(group_id)
        if group is not None and group.get("VpcId") == vpc_id:
            return {"via": "security group", "group_id": group_id, "subnets": sorted(ranges)[:LAMBDA_SUBNETS]}
    inside = sorted(s for s, r in ranges.items() if r is not None and any(r.subnet_of(a) for a in admitted_ranges))[:LAMBDA_SUBNETS]
    if inside:
        return {"via": "address range", "ranges": sorted({str(a) for a in admitted_ranges if any(ranges[s].subnet_of(a) for s in inside)}),
                "subnets": inside}
    return None


def referenced_groups(cluster_groups: list[dict]) -> list[str]:
    """The groups the clusters' ingress rules name, besides their own: DescribeSecurityGroups says which VPC each is in."""
    own = {g["GroupId"] for g in cluster_groups}
    return sorted({p["GroupId"] for g in cluster_groups for permission in g.get("IpPermissions", [])
                   for p in permission.get("UserIdGroupPairs", []) if p.get("GroupId") and p["GroupId"] not in own})


def describe_reach(ec2, port: int, vpc_id: str, group_ids: list[str], subnet_ids: list[str]) -> dict | None:
    """replicator_reach over what EC2 says now. Filters, not ids: a group another account owns is simply not found."""
    cluster_groups = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": group_ids}])["SecurityGroups"] if group_ids else []
    named = referenced_groups(cluster_groups)
    other_groups = ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": named}])["SecurityGroups"] if named else []
    subnets = ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": subnet_ids}])["Subnets"] if subnet_ids else []
    return replicator_reach(port, vpc_id, cluster_groups, other_groups, subnets)
