"""The Neptune Guard tag vocabulary: what remediation writes and detection reads (a retained original is reported as
such). The bottom floor of the library: it imports nothing of it.

Ownership is by tag, never by name: a resource the workflow creates carries `created-by` with the execution's ARN
from the moment it exists (tag-on-create); the customer's originals carry a tag only once on-call has approved.
"""

from __future__ import annotations

TAG_PREFIX = "neptune-guard:"
CREATED_BY = TAG_PREFIX + "created-by"              # on everything a workflow creates, at creation
CUTOVER = TAG_PREFIX + "cutover"                    # the original cluster and its instances, after approval
RETIRED_BY = TAG_PREFIX + "retired-by"              # the original once replaced: kept, stopped, until decommission
REPLACED_BY = TAG_PREFIX + "replaced-by"            # the DbClusterResourceId that serves now
RETAINED_UNTIL = TAG_PREFIX + "retained-until"      # the earliest date decommission may be approved
REMEDIATED_BY = TAG_PREFIX + "remediated-by"        # informational: the serving cluster's provenance
REPLACE_APPROVED_BY = TAG_PREFIX + "replace-approved-by"  # an original snapshot whose deletion on-call approved
REENCRYPT_APPROVED_BY = TAG_PREFIX + "re-encrypt-approved-by"  # an original snapshot on-call approved copying under the key
TEMPORARY_FOR = TAG_PREFIX + "temporary-for"        # a cluster restored from a customer's snapshot only to be snapshotted
DECOMMISSION_APPROVED_BY = TAG_PREFIX + "decommission-approved-by"  # a retired original whose deletion on-call approved
SERVED = TAG_PREFIX + "served-production"           # set on the new cluster just before it takes the production name
ARCHIVED_BY = TAG_PREFIX + "archived-by"            # the archive of a decommissioned original: the customer's, never deleted by us
# CUTOVER, REENCRYPT_APPROVED_BY, REPLACE_APPROVED_BY and DECOMMISSION_APPROVED_BY are approval marks: only the approval
# endpoint writes them (approve/approval_marks.py), through a member role of their own.
APPROVAL_MARKS = (CUTOVER, REENCRYPT_APPROVED_BY, DECOMMISSION_APPROVED_BY, REPLACE_APPROVED_BY)
# The tags the member roles' IAM conditions grant on (stacks/member_roles.py): the creation tags and the marks.
AUTHORIZING_TAGS = (CREATED_BY, ARCHIVED_BY, TEMPORARY_FOR, *APPROVAL_MARKS)
# The bookkeeping, which authorizes nothing (the scan reads the retirement tags as "kept on purpose").
BOOKKEEPING_TAGS = (RETIRED_BY, REPLACED_BY, RETAINED_UNTIL, REMEDIATED_BY, SERVED)

# What a remediation says on its Security Hub finding, as ProductFields imported through the tool's own product
# (remediate/notify.note_remediation); the scan keeps them when it imports the finding again (findings/asff.py).
FINDING_REMEDIATION_FIELDS = ("neptune-guard/RemediationExecution", "neptune-guard/RemediationStatus")


def tag_map(tags: list[dict]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags}


def tag_list(tags: dict[str, str]) -> list[dict]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def customer_tags(tags: list[dict]) -> list[dict]:
    """The tags a copy carries over: the customer's, never Neptune Guard's own bookkeeping."""
    return [t for t in tags if not t["Key"].startswith(TAG_PREFIX)]


def created_by(execution: str) -> list[dict]:
    return [{"Key": CREATED_BY, "Value": execution}]
