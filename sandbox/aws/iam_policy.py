"""A small evaluator of IAM identity policies, for proving what the synthesized roles allow.

Built from the IAM policy evaluation logic and the condition operator reference:
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html

- A request is allowed when some statement allows it and none denies it (an explicit deny wins; without
  an allow it is implicitly denied). The policies given are evaluated together, as one identity's: no
  permission boundaries, session policies or resource policies (the member roles have none of those). An
  SCP is evaluated the same way beside the FullAWSAccess policy AWS attaches by default (Allow * on *).
- A statement matches when its Action (or NotAction) matches the action, its Resource (or NotResource)
  matches the resource ARN, and every condition holds. `*` and `?` are wildcards in actions and ARNs;
  actions compare case-insensitively.
- Conditions: StringEquals, StringNotEquals, StringLike, StringNotLike, StringEqualsIgnoreCase, ArnLike,
  ArnEquals, Bool and Null, with the ForAnyValue:/ForAllValues: set qualifiers and the IfExists suffix. Within
  one operator the keys are ANDed and a key's values ORed. A key missing from the request context makes the
  condition false, except Null (which tests for it), ForAllValues (true for an empty or missing set) and
  ...IfExists (true), as the documentation says. Negated operators on a missing key are true.
- Policy variables (`${aws:SourceIdentity}`) in condition values take the request context's value; a statement
  with a variable the request has no value for does not apply ("If AWS cannot resolve a variable this might
  cause the entire statement to be invalid", reference_policies_variables.html), which is why a Deny on a
  variable is paired with a Null test of it.
- CloudFormation intrinsics in the synthesized templates (Ref, Fn::GetAtt, Fn::Join, Fn::Sub of pseudo parameters
  and stack parameters) are resolved from dictionaries the caller gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


def resolve(value, references: dict[str, str], attributes: dict[tuple[str, str], str] | None = None):
    """A template value with its intrinsics resolved (Ref, Fn::GetAtt from `attributes`, Fn::Join, Fn::Sub)."""
    if isinstance(value, list):
        return [resolve(v, references, attributes) for v in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return references[value["Ref"]]
        if set(value) == {"Fn::GetAtt"}:
            return attributes[tuple(value["Fn::GetAtt"])]
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve(p, references, attributes)) for p in parts)
        if set(value) == {"Fn::Sub"}:
            template = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return re.sub(r"\$\{([^}]+)\}", lambda m: references[m.group(1)], template)
        return {k: resolve(v, references, attributes) for k, v in value.items()}
    return value


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _matches_one(operator: str, wanted: list, have: str) -> bool:
    if operator in ("StringEquals", "ArnEquals"):
        return have in wanted
    if operator == "StringEqualsIgnoreCase":
        return have.lower() in [w.lower() for w in wanted]
    if operator in ("StringLike", "ArnLike"):
        return any(_glob(w, have) for w in wanted)
    if operator == "Bool":
        return str(have).lower() in [str(w).lower() for w in wanted]
    raise ValueError(f"condition operator {operator} is not evaluated by the sandbox")


NEGATED = {"StringNotEquals": "StringEquals", "StringNotLike": "StringLike", "ArnNotLike": "ArnLike", "ArnNotEquals": "ArnEquals"}


def _condition_holds(operator: str, key: str, wanted, context: dict) -> bool:
    qualifier, _, base = operator.rpartition(":")
    wanted = _as_list(wanted)
    present = key in context and context[key] is not None
    if base.endswith("IfExists"):
        if not present:
            return True
        base = base.removesuffix("IfExists")
    if base == "Null":
        return (not present) == (str(wanted[0]).lower() == "true")
    values = [str(v) for v in _as_list(context.get(key))] if present else []
    negated = base in NEGATED
    base = NEGATED.get(base, base)
    # The set qualifiers test each request value: a negated operator is a negated match per value. ForAllValues is
    # true for an empty or missing set, ForAnyValue false.
    if qualifier == "ForAllValues":
        return all(_matches_one(base, wanted, v) != negated for v in values)
    if qualifier == "ForAnyValue":
        return any(_matches_one(base, wanted, v) != negated for v in values)
    if not present:
        return negated
    result = any(_matches_one(base, wanted, v) for v in values)
    return not result if negated else result


VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _substituted(conditions: dict, context: dict) -> dict:
    """The conditions with each policy variable replaced by the request's value (KeyError when it has none)."""
    def value(text):
        return VARIABLE.sub(lambda m: str(context[m.group(1)]), text) if isinstance(text, str) else text

    return {op: {key: [value(w) for w in _as_list(wanted)] for key, wanted in pairs.items()} for op, pairs in conditions.items()}


@dataclass
class Decision:
    allowed: bool
    reason: str
    statements: list[str] = field(default_factory=list)


def evaluate(policies: list[dict], action: str, resource: str, context: dict | None = None) -> Decision:
    """Whether identity `policies` (resolved policy documents) allow `action` on `resource` with `context`."""
    context = context or {}
    allowing = []
    for policy in policies:
        for number, statement in enumerate(_as_list(policy.get("Statement", []))):
            name = statement.get("Sid") or f"statement {number}"
            if "Action" in statement and not any(_glob(a, action, ignore_case=True) for a in _as_list(statement["Action"])):
                continue
            if "NotAction" in statement and any(_glob(a, action, ignore_case=True) for a in _as_list(statement["NotAction"])):
                continue
            if "Resource" in statement and not any(_glob(r, resource) for r in _as_list(statement["Resource"])):
                continue
            if "NotResource" in statement and any(_glob(r, resource) for r in _as_list(statement["NotResource"])):
                continue
            try:
                conditions = _substituted(statement.get("Condition", {}), context)
            except KeyError:
                continue
            if not all(_condition_holds(op, key, wanted, context) for op, pairs in conditions.items() for key, wanted in pairs.items()):
                continue
            if statement["Effect"] == "Deny":
                return Decision(False, f"explicitly denied by {name}", [name])
            allowing.append(name)
    return Decision(bool(allowing), f"allowed by {', '.join(allowing)}" if allowing else "implicitly denied", allowing)


def role_policies(template: dict, role_name: str, references: dict[str, str]) -> list[dict]:
    """The resolved inline and attached policy documents of the role named `role_name` in a synthesized template."""
    resources = template["Resources"]
    logical = next(k for k, r in resources.items() if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName") == role_name)
    documents = [p["PolicyDocument"] for p in resources[logical]["Properties"].get("Policies", [])]
    for resource in resources.values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and {"Ref": logical} in resource["Properties"].get("Roles", []):
            documents.append(resource["Properties"]["PolicyDocument"])
    # A managed policy's Ref is its ARN (the role's statements may name one, such as a permissions boundary).
    policies = {k: f"arn:{references['AWS::Partition']}:iam::{references['AWS::AccountId']}:policy{r['Properties'].get('Path', '/')}"
                   f"{r['Properties']['ManagedPolicyName']}"
                for k, r in resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy" and "ManagedPolicyName" in r["Properties"]}
    return [resolve(d, {**policies, **references}) for d in documents]
