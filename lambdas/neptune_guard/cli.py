"""The `neptune-guard` command line: the same library the Lambda functions use."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from importlib.metadata import PackageNotFoundError, entry_points, version

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError, ProfileNotFound
from botocore.utils import ArnParser, InvalidArnException

from neptune_guard import __version__, console
from neptune_guard.approve import approval_client, executions
from neptune_guard.aws import ACCOUNT_ID, DEFAULT_AUDIT_ROLE, REGION_NAME, new_session
from neptune_guard.findings import report
from neptune_guard.options import accounts_option, concurrency_option, regions_option
from neptune_guard.remediate.guard import ALL_STAGES
from neptune_guard.scanner import ScanOptions, ScanSetupError, scan

EXIT_OK, EXIT_NOTHING_SCANNED, EXIT_USAGE, EXIT_CREDENTIALS, EXIT_AWS = 0, 1, 2, 3, 4
EXIT_FAILED = 1  # the approval endpoint could not be reached or failed: nothing is known to have changed
EXIT_CODES = ("exit status: 0 done; 1 nothing scanned, or the approval endpoint failed; 2 bad usage, bad input or a "
              "refused request; 3 no usable AWS credentials or configuration; 4 an AWS service error")
PLAN_ONLY = "arn:aws:states:us-east-1:000000000000:execution:NeptuneGuardClusterRemediation:plan-only"  # names in a plan shown, never run


class UsageError(Exception):
    pass


def _region(value: str) -> str:
    if not REGION_NAME.match(value):
        raise argparse.ArgumentTypeError(f"not a region name: {value!r}")
    return value


def _account(value: str) -> str:
    if not ACCOUNT_ID.match(value):
        raise argparse.ArgumentTypeError(f"not a 12-digit account id: {value!r}")
    return value


def _arn_of(service: str, resource_type: str):
    def parse(value: str) -> str:
        if not re.fullmatch(r"[\x21-\x7e]+", value):  # printable ASCII, no whitespace: ArnParser takes anything
            raise argparse.ArgumentTypeError(f"not an ARN: {value!r}")
        try:
            arn = ArnParser().parse_arn(value)
        except InvalidArnException:
            raise argparse.ArgumentTypeError(f"not an ARN: {value!r}") from None
        if arn["service"] != service or not arn["resource"].startswith(resource_type + ":") or not REGION_NAME.match(arn["region"]):
            raise argparse.ArgumentTypeError(f"not a Step Functions {resource_type} ARN: {value!r}")
        return value
    return parse


def _add_scan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=accounts_option, default="self",
                        help="'self' (default: the caller's account), 'org' (every ACTIVE account), or a comma list of ids")
    parser.add_argument("--role-name", default=DEFAULT_AUDIT_ROLE,
                        help=f"role to assume in each account (default {DEFAULT_AUDIT_ROLE})")
    parser.add_argument("--regions", type=regions_option, help="comma list of regions (default: every region enabled for each account)")
    parser.add_argument("--concurrency", type=concurrency_option, default=16, help="account-regions scanned at once (default 16)")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on the terminal")


def _add_target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, type=_account)
    parser.add_argument("--region", required=True, type=_region)
    resource = parser.add_mutually_exclusive_group(required=True)
    resource.add_argument("--cluster", help="a Neptune cluster identifier")
    resource.add_argument("--snapshot", help="a manual Neptune cluster snapshot identifier")
    parser.add_argument("--target-key", required=True, help="customer-managed key ARN or alias/NAME in the resource's region")
    parser.add_argument("--role-name", default="NeptuneGuardRemediation",
                        help="the member account's role (plan: NeptuneGuardPlanner, read-only; remediate: NeptuneGuardRemediation)")


def _approval_url(value: str) -> str:
    try:
        return approval_client.check_url(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _add_approval_url_argument(parser: argparse.ArgumentParser, purpose: str) -> None:
    parser.add_argument("--approval-url", type=_approval_url, default=os.environ.get(approval_client.URL_ENVIRONMENT_VARIABLE),
                        help=f"{purpose}: the approval function URL (default: ${approval_client.URL_ENVIRONMENT_VARIABLE})")


def _target_request(args) -> dict:
    request = {"account_id": args.account, "region": args.region, "target_key": args.target_key, "role_name": args.role_name}
    return {**request, "cluster_id": args.cluster} if args.cluster else {**request, "snapshot_id": args.snapshot}


def package_version() -> str:
    try:
        return version("neptune-guard")
    except PackageNotFoundError:  # run from the source tree without an install
        return __version__


def _common_options(home_region: bool = True, output_default: str | None = None) -> argparse.ArgumentParser:
    """What every command takes, as the AWS CLI does."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", help="the AWS profile to use (default: the environment's credentials)")
    if home_region:
        common.add_argument("--region", type=_region, help="the home region for STS, Organizations and Step Functions calls")
    common.add_argument("--debug", action="store_true", help="log botocore's requests and responses to stderr")
    if output_default:
        common.add_argument("--output", choices=("table", "json"), default=output_default)
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="neptune-guard",
        description="Find Amazon Neptune clusters and snapshots not protected by a customer-managed KMS key.",
        epilog=EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    home = _common_options(output_default="table")
    answer = _common_options(output_default="json")
    targeted = _common_options(home_region=False, output_default="json")  # --region is the resource's region there
    scan_parser = commands.add_parser("scan", parents=[home], help="scan accounts and regions and report the checks", epilog=EXIT_CODES)
    _add_scan_arguments(scan_parser)
    scan_parser.add_argument("--publish", action="store_true",
                             help="import the findings into each account's own Security Hub and archive resolved ones")
    scan_parser.add_argument("--no-neptune-analytics", action="store_true",
                             help="leave Neptune Analytics graphs out (say, where an SCP denies the service); their findings stay as they are")
    plan = commands.add_parser("plan", parents=[targeted], epilog=EXIT_CODES, help="show what remediation would do and carry over; changes nothing")
    _add_target_arguments(plan)
    plan.add_argument("--state-machine-arn", type=_arn_of("states", "stateMachine"),
                      help="the state machine remediate will start: the plan then names exactly what that execution creates")
    # On-call plans through the member accounts' read-only planner role (their approver policy may assume it).
    plan.set_defaults(role_name="NeptuneGuardPlanner")
    remediate = commands.add_parser("remediate", parents=[targeted], epilog=EXIT_CODES, help="start a remediation workflow (it waits for on-call approval)")
    remediate.add_argument("--state-machine-arn", required=True, type=_arn_of("states", "stateMachine"), help="the cluster or snapshot remediation state machine")
    _add_target_arguments(remediate)
    _add_approval_url_argument(remediate, "start through the approval endpoint, which records you as the requester")
    approve = commands.add_parser("approve", parents=[answer], epilog=EXIT_CODES, help="approve the step an execution waits on, through the approval endpoint")
    approve.add_argument("execution_arn", type=_arn_of("states", "execution"))
    approve.add_argument("--stage", choices=ALL_STAGES,
                         help="the approval you give (required: the cluster workflow asks snapshot, cutover and decommission, "
                              "the snapshot workflow re-encrypt and delete-original); the endpoint refuses it if the execution "
                              "waits for another")
    approve.add_argument("--reason", help="why, recorded with the approval in the execution's history")
    approve.add_argument("--accept-write-loss", action="store_true",
                         help="approve a cutover although writes were detected after the snapshot (they are lost)")
    _add_approval_url_argument(approve, "the approval endpoint (required)")
    reject = commands.add_parser("reject", parents=[answer], epilog=EXIT_CODES, help="reject the step an execution waits on, through the approval endpoint")
    reject.add_argument("execution_arn", type=_arn_of("states", "execution"))
    reject.add_argument("--stage", choices=ALL_STAGES, help="reject only if the execution waits for this approval")
    reject.add_argument("--reason", required=True, help="why, recorded in the execution's history and told to the requester")
    _add_approval_url_argument(reject, "the approval endpoint (required)")
    pending = commands.add_parser("pending", parents=[home], epilog=EXIT_CODES,
                                  help="list the executions waiting for an approval: stage, resource, requester, deadline")
    pending.add_argument("--account", type=_account, help="the security account of the workflows (default: the caller's)")
    status = commands.add_parser("status", parents=[_common_options(home_region=False, output_default="table")], epilog=EXIT_CODES,
                                 help="where an execution is, what serves the cluster's name, what is retained")
    status.add_argument("execution_arn", type=_arn_of("states", "execution"))
    commands.add_parser("checks", parents=[_common_options(home_region=False, output_default="table")], epilog=EXIT_CODES,
                        help="list the checks: id, resource, severity, title")
    demo = commands.add_parser("demo", help="run Neptune Guard end to end against the embedded local AWS")
    demo.add_argument("--scenario", help="JSON file describing the Organization to seed (default: the built-in demo)")
    demo.add_argument("--output", choices=("table", "json"), default="table",
                      help='json: one document {"before", "remediations", "after", "clusters", "errors"}')
    return parser


Progress = console.Progress  # kept for callers of cli.Progress


def run_scan(args) -> int:
    options = ScanOptions(
        accounts=args.accounts, role_name=args.role_name, regions=args.regions, concurrency=args.concurrency, publish=args.publish,
        read_graphs=not args.no_neptune_analytics,
    )
    progress = Progress(enabled=not args.no_progress)
    try:
        result = scan(options, aws_session(args), on_unit_done=progress)
    except ScanSetupError as error:
        progress.close()
        print(f"neptune-guard: the scan could not start: {error}", file=sys.stderr)
        return EXIT_NOTHING_SCANNED
    progress.close()
    if args.output == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(report.table(result, color=console.is_terminal(sys.stdout)))
    return EXIT_OK if result.scanned_units else EXIT_NOTHING_SCANNED


DEMO_ENTRY_POINTS = "neptune_guard.demo"


def run_demo(args) -> int:
    """The demo lives in the repository's sandbox (above the library); it is found through its entry point."""
    found = entry_points(group=DEMO_ENTRY_POINTS, name="demo")
    try:
        run = next(iter(found)).load()
    except (StopIteration, ImportError) as error:
        print(f"neptune-guard: the demo needs the development install (make demo, or pip install -e '.[dev]' in the "
              f"repository): {error or 'no demo is installed'}", file=sys.stderr)
        return EXIT_USAGE
    return run(scenario_path=args.scenario, output=args.output)


def approval_request(args) -> dict:
    """What the approval endpoint is asked; the endpoint, not this client, says who asks."""
    if args.command == "remediate":
        # The endpoint takes the member role and the safety durations from the deployment, not from the requester.
        request = {k: v for k, v in _target_request(args).items() if k != "role_name"}
        return {"action": "start", "state_machine_arn": args.state_machine_arn, "request": request}
    stage = getattr(args, "stage", None)
    if args.command == "approve":
        stages = executions.stages_of(args.execution_arn)
        if stage is None:
            raise UsageError(f"approve needs --stage: this execution's workflow asks for {len(stages) or 'several'} approvals "
                             f"({', '.join(stages) or 'unknown stages'}), and an approval meant for one must not answer "
                             f"another. See which one it waits for with: neptune-guard status {args.execution_arn}")
        if stages and stage not in stages:
            raise UsageError(f"this execution's workflow has no {stage} approval (its stages: {', '.join(stages)})")
        return {"action": "approve", "execution_arn": args.execution_arn, "stage": stage, "accept_write_loss": args.accept_write_loss,
                **({"reason": args.reason} if args.reason else {})}
    return {"action": "reject", "execution_arn": args.execution_arn, "reason": args.reason, **({"stage": stage} if stage else {})}


def aws_session(args):
    """The session every AWS call of a command starts from: --profile and the home --region, as the AWS CLI takes them."""
    import boto3

    if args.debug:
        boto3.set_stream_logger("botocore", logging.DEBUG)
    return new_session(getattr(args, "region", None), args.profile)


def show(document: dict, output: str) -> None:
    """A command's answer: the JSON document, or one `key: value` line per field for people."""
    if output == "json":
        print(json.dumps(document, indent=2, default=str))
        return
    for key, value in document.items():
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            print(f"{key}:" + "".join(f"\n  - {item}" for item in value) if value else f"{key}: none")
        else:
            print(f"{key}: {value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value, default=str)}")


def run_workflow_command(args) -> int:
    from neptune_guard.approve import workflow
    from neptune_guard.remediate import plan, snapshot
    from neptune_guard.remediate.resources import InvalidRequest, Step, parse_arn

    session = aws_session(args)
    try:
        if args.command == "plan":
            step = plan.plan_cluster if args.cluster else snapshot.plan_snapshot
            execution = PLAN_ONLY
            if args.state_machine_arn:
                sfn = session.client("stepfunctions", region_name=parse_arn(args.state_machine_arn, "state machine ARN")["region"])
                execution = workflow.next_execution(sfn, args.state_machine_arn, _target_request(args))
            else:
                print("neptune-guard: the names below are examples; with --state-machine-arn they are the ones the next "
                      "execution will create", file=sys.stderr)
            show(step(Step(request=_target_request(args), execution=execution, base=session)), args.output)
        elif args.command == "remediate" and not args.approval_url:
            # Straight to Step Functions: for holders of states:StartExecution (administrators, automation), who
            # are recorded as the requester by their own STS identity so that someone else must approve.
            sfn = session.client("stepfunctions", region_name=parse_arn(args.state_machine_arn, "state machine ARN")["region"])
            requester = session.client("sts").get_caller_identity()["Arn"]
            show({"execution_arn": workflow.start(sfn, args.state_machine_arn, {**_target_request(args), "requested_by": requester})},
                 args.output)
        else:
            body = approval_request(args)  # refused here, before any call, when it could answer the wrong question
            if not args.approval_url:
                raise UsageError(f"{args.command} goes through the approval endpoint: give --approval-url or set "
                                 f"{approval_client.URL_ENVIRONMENT_VARIABLE}")
            show(approval_client.call(session, args.approval_url, body), args.output)
    except (InvalidRequest, approval_client.EndpointRefused, UsageError, workflow.TooManyAttempts) as error:
        print(f"neptune-guard: {error}", file=sys.stderr)
        return EXIT_USAGE
    except approval_client.EndpointError as error:
        print(f"neptune-guard: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run_checks(args) -> int:
    from neptune_guard.detect.checks import CHECKS

    rows = sorted(CHECKS, key=lambda c: (console.SEVERITY_ORDER.get(c.severity, 9), c.id))
    if args.output == "json":
        print(json.dumps([{"id": c.id, "resource_type": c.resource_type, "severity": c.severity, "title": c.title,
                           "security_hub_control": c.security_hub_control, "remediation_workflow": c.workflow} for c in rows], indent=2))
    else:
        print(console.table(["SEVERITY", "CHECK", "RESOURCE", "TITLE"],
                            [[c.severity, c.id, report.KINDS.get(c.resource_type, c.resource_type), c.title] for c in rows],
                            color=console.is_terminal(sys.stdout)))
    return EXIT_OK


def run_pending(args) -> int:
    session = aws_session(args)
    identity = session.client("sts").get_caller_identity()
    partition = identity["Arn"].split(":")[1]
    region = session.region_name
    if not region:
        raise NoRegionError()
    sfn = session.client("stepfunctions")
    found = executions.pending(sfn, executions.state_machine_arns(partition, region, args.account or identity["Account"]))
    if args.output == "json":
        print(json.dumps(found, indent=2))
        return EXIT_OK
    if not found:
        print(f"No execution waits for an approval in {args.account or identity['Account']} {region}.")
        return EXIT_OK
    print(console.table(["STAGE", "RESOURCE", "ACCOUNT", "REGION", "REQUESTED BY", "DEADLINE", "EXECUTION"],
                        [[p["stage"] + (" (WRITES DETECTED)" if p["writes_detected"] else ""), f"{p['resource_type']} {p['resource']}",
                          p["account_id"], p["region"], (p["requested_by"] or "?").rsplit("/", 1)[-1], p["deadline"] or "?",
                          p["execution_arn"]] for p in found],
                        color=console.is_terminal(sys.stdout), severity_column=None))
    print("\nAnswer with: neptune-guard approve EXECUTION --stage STAGE   or   neptune-guard reject EXECUTION --reason WHY")
    return EXIT_OK


def run_status(args) -> int:
    from neptune_guard.remediate.resources import parse_arn

    session = aws_session(args)
    sfn = session.client("stepfunctions", region_name=parse_arn(args.execution_arn, "execution ARN")["region"])
    try:
        document = executions.status(sfn, args.execution_arn)
    except ClientError as error:
        if error.response["Error"]["Code"] in ("ExecutionDoesNotExist", "InvalidArn"):
            print(f"neptune-guard: no execution {args.execution_arn}", file=sys.stderr)
            return EXIT_USAGE
        raise
    show(document, args.output)
    waiting = document.get("waiting_for")
    if args.output != "json" and waiting:
        from neptune_guard.remediate.notifications import answer_commands

        commands = answer_commands(args.execution_arn, waiting["stage"])
        print(f"\nIt waits for the {waiting['stage']} approval until {waiting['deadline'] or '?'}:\n  {commands['approve']}\n  {commands['reject']}")
    return EXIT_OK


COMMANDS = {"scan": run_scan, "demo": run_demo, "checks": run_checks, "pending": run_pending, "status": run_status}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS.get(args.command, run_workflow_command)(args)
    except (NoCredentialsError, PartialCredentialsError, ProfileNotFound, NoRegionError) as error:
        print(f"neptune-guard: no usable AWS credentials or configuration: {error}", file=sys.stderr)
        return EXIT_CREDENTIALS
    except (ClientError, BotoCoreError) as error:
        print(f"neptune-guard: AWS refused: {error}", file=sys.stderr)
        return EXIT_AWS
