"""Refuse a Terraform plan that creates or changes a Neptune cluster or Neptune Analytics graph without a
customer-managed KMS key.

    terraform plan -out plan.out && terraform show -json plan.out > plan.json
    python3 check_plan.py plan.json

Exit status: 0 compliant; 1 a violation (one line each on stdout, by resource address); 2 the file is not a
Terraform JSON plan (one line on stderr). Python 3.9+ standard library only, so any CI runner has it.

Checked, for every managed resource the plan creates or updates (a replacement included):
- aws_neptune_cluster: storage_encrypted is true and kms_key_arn is set;
- aws_neptunegraph_graph: kms_key_identifier is set;
- a key that names an AWS-managed alias (alias/aws/...) or the AWS-owned key fails.
Deletions, no-ops and data sources pass: removing a non-compliant resource is fine, and existing resources
are the scan's to report.

Both key attributes are optional and computed in the AWS provider, so an unconfigured key is also unknown
at plan time ("after_unknown"), exactly like one that refers to a key created in the same plan. An unknown
key therefore counts as set only when the resource's configuration sets it from a reference ("configuration"
section: another resource's attribute, a data source, a module variable).
Plan format: https://developer.hashicorp.com/terraform/internals/json-format
"""

from __future__ import annotations

import json
import re
import sys

# resource type -> (key attribute, encryption flag that must be true, or None)
CHECKED = {
    "aws_neptune_cluster": ("kms_key_arn", "storage_encrypted"),
    "aws_neptunegraph_graph": ("kms_key_identifier", None),
    # The Cloud Control provider (awscc) names its attributes after the CloudFormation properties, in snake case.
    "awscc_neptune_db_cluster": ("kms_key_id", "storage_encrypted"),
    "awscc_neptunegraph_graph": ("kms_key_identifier", None),
}
# The provider reports a graph without a key of its own under this value (its kms_key_identifier default).
AWS_OWNED_KEY = "AWS_OWNED_KEY"
AWS_MANAGED_ALIAS = re.compile(r"(^|:)alias/aws/")
MODULE_STEP = re.compile(r'module\.([^.\[]+)(?:\[(?:"(?:[^"\\]|\\.)*"|[^\]]*)\])?')


class NotAPlan(Exception):
    pass


def _module_configuration(plan: dict, module_address: str | None) -> dict:
    """The configuration block of the module at `module_address` (instance keys dropped: config is per call)."""
    module = plan.get("configuration", {}).get("root_module", {})
    for name in MODULE_STEP.findall(module_address or ""):
        module = module.get("module_calls", {}).get(name, {}).get("module", {})
    return module


def _set_by_reference(plan: dict, change: dict, attribute: str) -> bool:
    """Whether the resource's configuration sets `attribute` from something only known at apply (a reference).

    A value known at plan time would already be in "after"; `attribute = null` has no references."""
    address = f"{change['type']}.{change['name']}"
    resources = _module_configuration(plan, change.get("module_address")).get("resources", [])
    return any(
        r.get("address") == address and r.get("expressions", {}).get(attribute, {}).get("references")
        for r in resources
    )


def violations(plan) -> list[str]:
    if not isinstance(plan, dict) or "format_version" not in plan or "planned_values" not in plan:
        raise NotAPlan("not a Terraform plan in JSON: give the output of `terraform show -json PLANFILE`")
    found = []
    for change in plan.get("resource_changes", []):
        if change.get("mode") != "managed" or change.get("type") not in CHECKED:
            continue
        actions = change["change"]["actions"]
        if "create" not in actions and "update" not in actions:
            continue
        key_attribute, flag = CHECKED[change["type"]]
        after = change["change"].get("after") or {}
        unknown = change["change"].get("after_unknown") or {}
        address = change["address"]
        if flag and after.get(flag) is not True:
            found.append(f"{address}: {flag} must be true")
        key = after.get(key_attribute)
        if isinstance(key, str) and key:
            if key == AWS_OWNED_KEY or AWS_MANAGED_ALIAS.search(key):
                found.append(f"{address}: {key_attribute} names an AWS-managed or AWS-owned key ({key}); use a customer-managed key")
        elif not (unknown.get(key_attribute) is True and _set_by_reference(plan, change, key_attribute)):
            found.append(f"{address}: {key_attribute} must name a customer-managed KMS key")
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check_plan.py PLAN_JSON  (from `terraform show -json PLANFILE`)", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as file:
            found = violations(json.load(file))
    except (OSError, ValueError, NotAPlan) as error:
        print(f"check_plan.py: {argv[1]}: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as error:
        print(f"check_plan.py: {argv[1]}: not a Terraform JSON plan: a resource change lacks or misshapes {error}", file=sys.stderr)
        return 2
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
