"""Point-in-time restore of the clinic's RDS PostgreSQL instance into a NEW instance, and the drill that measures it.

    python -m ops.db_restore restore --region eu-west-1 --source <instance id> \
        (--time 2026-11-24T09:55:00Z | --latest) [--target <id>] [--stack prod] [--dry-run] [--json]
    python -m ops.db_restore drill --region eu-west-1 --source <instance id> [--rto-target-seconds 1800] [--json]

`restore` never touches the source: RDS restores into a new instance, which this command builds like the source
(subnet group, security groups, parameter group, class, storage, Multi-AZ, encryption, private, deletion protection)
because RestoreDBInstanceToPointInTime otherwise falls back to the default subnet group, security group and
parameter group. The new instance gets its own RDS-managed master secret; the source's password is never read. The
stack then points the apps and alarms at it through `database.restoredInstanceId` (printed commands).

`drill` restores the source's latest restorable time into `<source>-drill-<yyyymmddhhmm>`, checks it, prints the RPO
and RTO as one JSON line, and deletes the drill instance whatever happened in between.

Exit codes: 0 done; 1 an AWS error or a failed wait/check (named); 2 bad input, refused before any AWS write;
3 the drill ran and cleaned up but its measured RTO exceeded --rto-target-seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from limits import DB_INSTANCE_ID_PATTERN  # the rule database.restoredInstanceId is checked against

log = logging.getLogger("clinic.db_restore")

EXIT_OK, EXIT_AWS, EXIT_INPUT, EXIT_RTO_MISSED = 0, 1, 2, 3
MAX_IDENTIFIER_LENGTH = 63
DEFAULT_WAIT_SECONDS = 3600
DEFAULT_DELETE_WAIT_SECONDS = 1800
DEFAULT_POLL_SECONDS = 30
DEFAULT_RTO_TARGET_SECONDS = 1800
CONFIG_KEY = "clinic-platform:database.restoredInstanceId"
# Tag values allow letters, digits, spaces and _ . : / = + - @ only, so no ISO offset "+00:00" or fractions.
TAG_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# The restored instance is not in any Pulumi state: tag tools must not take it for a Pulumi-managed resource.
MANAGED_BY = "ops.db_restore"


class InputError(ValueError):
    """Bad input: named setting, value and what is allowed. Raised before any AWS write."""


class RestoreError(RuntimeError):
    """AWS accepted the request but the outcome is wrong (the wait failed or timed out, a check failed)."""


# -- pure functions ---------------------------------------------------------------------------------------------


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TAG_TIME_FORMAT)


def parse_time(value: str) -> datetime:
    """`--time` as an aware UTC datetime; a naive time is refused, since RDS would read it as UTC silently."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--time = {value!r} is not an ISO-8601 time; allowed: e.g. 2026-11-24T09:55:00Z") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise InputError(
            f"--time = {value!r} has no timezone; allowed: an ISO-8601 time with Z or an offset, "
            "e.g. 2026-11-24T09:55:00Z"
        )
    return parsed.astimezone(UTC)


def check_identifier(value: str, setting: str = "--target") -> str:
    if len(value) > MAX_IDENTIFIER_LENGTH or not re.fullmatch(DB_INSTANCE_ID_PATTERN, value):
        raise InputError(
            f"{setting} = {value!r} is not a valid RDS instance identifier; allowed: 1-63 lowercase "
            "letters, digits or -, starting with a letter, no -- and not ending with -"
        )
    return value


def derived_identifier(source: str, label: str, moment: datetime) -> str:
    """`<source>-<label>-<yyyymmddhhmm>`, the source part shortened so the whole stays within 63 characters."""
    suffix = f"-{label}-{moment.astimezone(UTC):%Y%m%d%H%M}"
    return source[: MAX_IDENTIFIER_LENGTH - len(suffix)].rstrip("-") + suffix


@dataclass(frozen=True)
class RestoreWindow:
    earliest: datetime
    """Earliest restorable time."""
    latest: datetime
    """LatestRestorableTime of the source (RDS uploads transaction logs about every 5 minutes)."""
    earliest_source: str
    """Where `earliest` came from: the automated backup's RestoreWindow, or an estimate."""


def restore_window(
    instance: Mapping[str, Any], automated_backups: Sequence[Mapping[str, Any]], now: datetime
) -> RestoreWindow:
    """The source's restorable window from describe_db_instances and describe_db_instance_automated_backups."""
    source = instance["DBInstanceIdentifier"]
    retention = instance.get("BackupRetentionPeriod", 0)
    if not retention:
        raise InputError(
            f"--source = {source!r} has automated backups off (BackupRetentionPeriod = {retention}); "
            "allowed: an instance with backups, which this stack always enables"
        )
    latest = instance.get("LatestRestorableTime")
    if latest is None:
        raise InputError(
            f"--source = {source!r} has no LatestRestorableTime yet (its first backup has not "
            "completed); allowed: an instance with a completed backup"
        )
    resource_id = instance.get("DbiResourceId")
    for backup in automated_backups:
        # A retained backup of an earlier instance with the same name has another DbiResourceId: not this window.
        if backup.get("DbiResourceId") not in (None, resource_id) or backup.get("Status") not in (None, "active"):
            continue
        earliest = (backup.get("RestoreWindow") or {}).get("EarliestTime")
        if earliest is not None:
            return RestoreWindow(earliest, latest, "automated backup RestoreWindow")
    # Estimate when RDS gives no RestoreWindow: no earlier than creation, nor than the retention period allows.
    estimate = max(instance["InstanceCreateTime"], now - timedelta(days=retention))
    return RestoreWindow(estimate, latest, "estimated from InstanceCreateTime and BackupRetentionPeriod")


def check_in_window(moment: datetime, window: RestoreWindow, source: str) -> None:
    if not window.earliest <= moment <= window.latest:
        raise InputError(
            f"--time = {moment.isoformat()} is outside the restorable window of {source!r}; allowed: "
            f"{window.earliest.isoformat()} to {window.latest.isoformat()} ({window.earliest_source})"
        )


def restore_tags(source: Mapping[str, Any], restore_point: datetime, *, drill: bool) -> list[dict[str, str]]:
    tags = {t["Key"]: t.get("Value", "") for t in source.get("TagList", []) if not t["Key"].startswith("aws:")}
    tags.update(
        {
            "managed-by": MANAGED_BY,
            "restored-from": source["DBInstanceIdentifier"],
            "restored-to-time": utc_text(restore_point),
        }
    )
    if drill:
        tags["restore-drill"] = "true"
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def restore_request(
    source: Mapping[str, Any],
    target: str,
    restore_time: datetime | None,
    tags: list[dict[str, str]],
    *,
    deletion_protection: bool | None = None,
) -> dict[str, Any]:
    """The RestoreDBInstanceToPointInTime arguments that make the new instance a copy of the source's shape."""
    name = source["DBInstanceIdentifier"]
    subnet_group = (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    security_groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])]
    parameter_groups = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups", [])]
    if not subnet_group or not security_groups or not parameter_groups:
        raise InputError(
            f"--source = {name!r} lacks a DB subnet group, VPC security groups or a parameter group "
            f"(got {subnet_group!r}, {security_groups}, {parameter_groups}); allowed: an instance in a "
            "VPC like the stack's"
        )
    request: dict[str, Any] = {
        "SourceDBInstanceIdentifier": name,
        "TargetDBInstanceIdentifier": target,
        # Without these three RDS uses the default subnet group, security group and parameter group: the instance
        # would land outside the database subnets, unreachable from the cluster, and without rds.force_ssl.
        "DBSubnetGroupName": subnet_group,
        "VpcSecurityGroupIds": security_groups,
        "DBParameterGroupName": parameter_groups[0],
        "DBInstanceClass": source["DBInstanceClass"],
        "StorageType": source["StorageType"],
        "MultiAZ": source.get("MultiAZ", False),
        "PubliclyAccessible": False,
        "CopyTagsToSnapshot": True,
        "DeletionProtection": source.get("DeletionProtection", False)
        if deletion_protection is None
        else deletion_protection,
        "EnableIAMDatabaseAuthentication": source.get("IAMDatabaseAuthenticationEnabled", False),
        "AutoMinorVersionUpgrade": source.get("AutoMinorVersionUpgrade", True),
        "BackupRetentionPeriod": source["BackupRetentionPeriod"],
        # A new secret managed by RDS, encrypted with the source's secret key; the old password is never read.
        # Storage needs no key here: RDS encrypts the restore with the source's storage key (KmsKeyId) itself.
        "ManageMasterUserPassword": True,
        "Tags": tags,
    }
    secret_key = (source.get("MasterUserSecret") or {}).get("KmsKeyId")
    if secret_key:
        request["MasterUserSecretKmsKeyId"] = secret_key
    if source.get("MaxAllocatedStorage"):
        request["MaxAllocatedStorage"] = source["MaxAllocatedStorage"]
    if source.get("EnabledCloudwatchLogsExports"):
        request["EnableCloudwatchLogsExports"] = list(source["EnabledCloudwatchLogsExports"])
    if source.get("CACertificateIdentifier"):
        request["CACertificateIdentifier"] = source["CACertificateIdentifier"]
    if restore_time is None:
        request["UseLatestRestorableTime"] = True
    else:
        request["RestoreTime"] = restore_time
    return request


def check_restored(instance: Mapping[str, Any], source: Mapping[str, Any]) -> dict[str, bool]:
    """What the drill verifies on the restored instance (True = as required)."""
    return {
        "available": instance.get("DBInstanceStatus") == "available",
        "encrypted": bool(instance.get("StorageEncrypted")),
        "source_kms_key": instance.get("KmsKeyId") == source.get("KmsKeyId"),
        "private": instance.get("PubliclyAccessible") is False,
        "source_subnet_group": (instance.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
        == (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName"),
        "source_security_groups": sorted(g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups", []))
        == sorted(g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])),
        "managed_secret": bool((instance.get("MasterUserSecret") or {}).get("SecretArn")),
    }


def pulumi_commands(target: str, stack: str | None) -> dict[str, list[str]]:
    on = f" --stack {stack}" if stack else ""
    return {
        "use_restored": [f"pulumi config set --path '{CONFIG_KEY}' {target}{on}", f"pulumi up{on}"],
        "go_back": [f"pulumi config rm --path '{CONFIG_KEY}'{on}", f"pulumi up{on}"],
    }


# -- AWS ---------------------------------------------------------------------------------------------------------


@dataclass
class RestorePlan:
    """A validated restore, built from reads only."""

    source: str
    target: str
    window: RestoreWindow
    restore_point: datetime
    """The chosen time, or for --latest the source's LatestRestorableTime when planned (RDS may use a few seconds
    later)."""
    latest: bool
    request: dict[str, Any]
    source_instance: dict[str, Any] = field(repr=False)


@dataclass
class RestoreResult:
    source: str
    target: str
    restore_point: str
    latest_restorable_time: str
    requested_at: str
    available_at: str
    rpo_seconds: int
    """Restore request time minus the restore point: what the restored data lacks at the moment of the request."""
    restore_seconds: float
    """Measured from the restore request to the instance being available."""
    endpoint: str
    port: int
    secret_arn: str
    kms_key_id: str


class DatabaseRestorer:
    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        rds: Any = None,
        poll_seconds: float = DEFAULT_POLL_SECONDS,
        now: Callable[[], datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if poll_seconds <= 0:
            raise InputError(f"--poll = {poll_seconds!r} is invalid; allowed: > 0 seconds")
        self.rds = rds or boto3.session.Session(region_name=region).client("rds", endpoint_url=endpoint_url)
        self.poll_seconds = poll_seconds
        self.now = now or (lambda: datetime.now(UTC))
        self.monotonic, self.sleep = monotonic, sleep

    # -- reads ---------------------------------------------------------------------------------------------------

    def describe(self, identifier: str) -> dict[str, Any] | None:
        try:
            return self.rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
        except ClientError as error:
            if error.response["Error"]["Code"] == "DBInstanceNotFound":
                return None
            raise

    def plan(self, source: str, *, time_text: str | None, target: str | None, drill: bool = False) -> RestorePlan:
        """Validate everything, reading only: the time, the target name, the source, its window, a free target."""
        restore_time = parse_time(time_text) if time_text is not None else None
        if target is not None:
            check_identifier(target)
        instance = self.describe(source)
        if instance is None:
            raise InputError(
                f"--source = {source!r} is not an RDS instance in this region; allowed: the identifier "
                "of the stack's instance (`pulumi stack output databaseInstanceId`)"
            )
        name = instance["DBInstanceIdentifier"]
        backups = self.rds.describe_db_instance_automated_backups(DBInstanceIdentifier=name)
        window = restore_window(instance, backups.get("DBInstanceAutomatedBackups", []), self.now())
        if restore_time is not None:
            check_in_window(restore_time, window, name)
        restore_point = restore_time or window.latest
        if target is None:
            target = check_identifier(
                derived_identifier(name, "drill" if drill else "pitr", self.now() if drill else restore_point)
            )
        if target == name:
            raise InputError(f"--target = {target!r} is the source; allowed: a new instance identifier")
        if self.describe(target) is not None:
            raise InputError(f"--target = {target!r} is taken by an existing instance; allowed: a new identifier")
        tags = restore_tags(instance, restore_point, drill=drill)
        # A drill instance must always be deletable by the drill's own clean-up.
        request = restore_request(instance, target, restore_time, tags, deletion_protection=False if drill else None)
        return RestorePlan(name, target, window, restore_point, restore_time is None, request, instance)

    # -- writes --------------------------------------------------------------------------------------------------

    def start(self, plan: RestorePlan) -> datetime:
        log.info(
            "restoring %s to %s as %s",
            plan.source,
            "its latest restorable time" if plan.latest else utc_text(plan.restore_point),
            plan.target,
        )
        requested_at = self.now()
        self.rds.restore_db_instance_to_point_in_time(**plan.request)
        return requested_at

    def wait_available(self, target: str, timeout_seconds: float) -> dict[str, Any]:
        log.info("waiting up to %g s for %s to be available", timeout_seconds, target)
        try:
            self.rds.get_waiter("db_instance_available").wait(
                DBInstanceIdentifier=target,
                WaiterConfig={
                    "Delay": self.poll_seconds,
                    "MaxAttempts": max(1, math.ceil(timeout_seconds / self.poll_seconds)),
                },
            )
        except WaiterError as error:
            status = (self.describe(target) or {}).get("DBInstanceStatus", "gone")
            if "Max attempts exceeded" in str(error):
                raise RestoreError(f"{target} is still {status!r} after {timeout_seconds:g} s") from error
            raise RestoreError(f"waiting for {target} failed with status {status!r}: {error}") from error
        instance = self.describe(target)
        if instance is None:
            raise RestoreError(f"{target} was available, then gone")
        return instance

    def restore(self, plan: RestorePlan, timeout_seconds: float) -> RestoreResult:
        started = self.monotonic()
        requested_at = self.start(plan)
        instance = self.wait_available(plan.target, timeout_seconds)
        elapsed = self.monotonic() - started
        endpoint = instance.get("Endpoint") or {}
        return RestoreResult(
            source=plan.source,
            target=plan.target,
            restore_point=utc_text(plan.restore_point),
            latest_restorable_time=utc_text(plan.window.latest),
            requested_at=utc_text(requested_at),
            available_at=utc_text(self.now()),
            rpo_seconds=max(0, round((requested_at - plan.restore_point).total_seconds())),
            restore_seconds=round(elapsed, 1),
            endpoint=endpoint.get("Address", ""),
            port=endpoint.get("Port", 0),
            secret_arn=(instance.get("MasterUserSecret") or {}).get("SecretArn", ""),
            kms_key_id=instance.get("KmsKeyId", ""),
        )

    def delete(self, target: str, source: str, timeout_seconds: float) -> bool:
        """Delete a drill instance (no final snapshot, no retained backups) and wait until it is gone. False when
        there was nothing to delete. Only an instance named and tagged as a drill is ever deleted."""
        instance = self.describe(target)
        if instance is None:
            return False
        tags = {t["Key"]: t.get("Value") for t in instance.get("TagList", [])}
        if target == source or "-drill-" not in target or tags.get("restore-drill") != "true":
            raise RestoreError(
                f"refusing to delete {target!r}: only an instance named <source>-drill-<time> and "
                "tagged restore-drill=true is ever deleted"
            )
        if instance.get("DeletionProtection"):
            # The drill restores unprotected; should the instance be protected anyway, clean-up must still succeed.
            log.info("turning off deletion protection of drill instance %s", target)
            self.rds.modify_db_instance(DBInstanceIdentifier=target, DeletionProtection=False, ApplyImmediately=True)
        deadline = self.monotonic() + timeout_seconds
        while True:
            try:
                self.rds.delete_db_instance(
                    DBInstanceIdentifier=target, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
                )
                break
            except ClientError as error:
                code = error.response["Error"]["Code"]
                if code == "DBInstanceNotFound":
                    return False
                # RDS refuses to delete while the instance is still being created or modified: retry until then.
                if code != "InvalidDBInstanceState" or self.monotonic() + self.poll_seconds > deadline:
                    raise
                log.info("%s cannot be deleted yet (%s), retrying in %g s", target, code, self.poll_seconds)
                self.sleep(self.poll_seconds)
        log.info("deleting %s, waiting up to %g s", target, timeout_seconds)
        remaining = max(self.poll_seconds, deadline - self.monotonic())
        self.rds.get_waiter("db_instance_deleted").wait(
            DBInstanceIdentifier=target,
            WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": max(1, math.ceil(remaining / self.poll_seconds))},
        )
        return True

    def drill(
        self, source: str, *, rto_target_seconds: float, timeout_seconds: float, delete_timeout_seconds: float
    ) -> dict[str, Any]:
        """Restore --latest into a drill instance, check it, delete it whatever happened; return the figures."""
        plan = self.plan(source, time_text=None, target=None, drill=True)
        report: dict[str, Any] = {
            "drill": "failed",
            "source": plan.source,
            "target": plan.target,
            "restore_point": utc_text(plan.restore_point),
            "rpo_seconds": None,
            "rto_seconds": None,
            "rto_target_seconds": rto_target_seconds,
            "checks": {},
            "deleted": False,
            "error": None,
            "started_at": utc_text(self.now()),
        }
        try:
            result = self.restore(plan, timeout_seconds)
            report.update(rpo_seconds=result.rpo_seconds, rto_seconds=result.restore_seconds)
            instance = self.describe(plan.target) or {}
            report["checks"] = check_restored(instance, plan.source_instance)
            failed = [name for name, ok in report["checks"].items() if not ok]
            if failed:
                raise RestoreError(f"{plan.target} failed the checks: {', '.join(failed)}")
        except (RestoreError, ClientError, BotoCoreError) as error:
            report["error"] = str(error)
        finally:
            # Always clean up, including after a failed wait: a forgotten drill instance costs money and holds a copy
            # of patients' data outside the stack.
            try:
                report["deleted"] = self.delete(plan.target, plan.source, delete_timeout_seconds)
            except (RestoreError, ClientError, BotoCoreError, WaiterError) as error:
                report["error"] = "; ".join(
                    filter(
                        None,
                        [
                            report["error"],
                            f"deleting {plan.target} failed: {error}; "
                            f"delete it: aws rds delete-db-instance "
                            f"--db-instance-identifier {plan.target} "
                            "--skip-final-snapshot --delete-automated-backups",
                        ],
                    )
                )
        report["finished_at"] = utc_text(self.now())
        if report["error"] is None:
            report["drill"] = "passed" if report["rto_seconds"] <= rto_target_seconds else "rto-missed"
        return report


# -- command line -----------------------------------------------------------------------------------------------


def _restore_text(result: RestoreResult, stack: str | None) -> str:
    commands = pulumi_commands(result.target, stack)
    return "\n".join(
        [
            f"restored {result.source} to {result.restore_point} as {result.target}",
            f"  endpoint      {result.endpoint}:{result.port}",
            f"  secret        {result.secret_arn} "
            "(a new RDS-managed master secret; the source's password was not read)",
            f"  storage key   {result.kms_key_id}",
            f"  RPO           restore point {result.restore_point}, {result.rpo_seconds} s before the request at "
            f"{result.requested_at} (latest restorable was {result.latest_restorable_time})",
            f"  restore time  {result.restore_seconds:g} s (request to available)",
            "Point the apps and the alarms at it (the original instance stays as it is, with everything written "
            "after the restore point, for comparison and forensics):",
            *(f"  {c}" for c in commands["use_restored"]),
            "Go back to the original instance:",
            *(f"  {c}" for c in commands["go_back"]),
        ]
    )


def _json_ready(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ops.db_restore",
        description="Restore the clinic's RDS instance to a point in time as a new "
        "instance, or drill it and measure RPO/RTO.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--region", required=True)
    common.add_argument("--source", required=True, help="the source RDS instance identifier")
    common.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_WAIT_SECONDS,
        help=f"seconds to wait for the new instance (default {DEFAULT_WAIT_SECONDS})",
    )
    common.add_argument(
        "--poll",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help=f"seconds between status checks (default {DEFAULT_POLL_SECONDS})",
    )
    common.add_argument("--endpoint-url", help="AWS endpoint (an emulator)")
    common.add_argument("--json", action="store_true", help="one JSON object on stdout")
    commands = parser.add_subparsers(dest="command", required=True)
    restore = commands.add_parser("restore", parents=[common], help="restore to a point in time as a new instance")
    when = restore.add_mutually_exclusive_group(required=True)
    when.add_argument("--time", help="ISO-8601 time with a timezone, e.g. 2026-11-24T09:55:00Z")
    when.add_argument("--latest", action="store_true", help="the source's latest restorable time")
    restore.add_argument("--target", help="new instance identifier (default <source>-pitr-<yyyymmddhhmm>)")
    restore.add_argument("--stack", help="Pulumi stack, written into the printed commands")
    restore.add_argument("--dry-run", action="store_true", help="validate and print the request; create nothing")
    drill = commands.add_parser("drill", parents=[common], help="restore --latest, check, delete; print RPO/RTO")
    drill.add_argument(
        "--rto-target-seconds",
        type=int,
        default=DEFAULT_RTO_TARGET_SECONDS,
        help=f"fail when the restore takes longer (default {DEFAULT_RTO_TARGET_SECONDS})",
    )
    drill.add_argument(
        "--delete-timeout",
        type=float,
        default=DEFAULT_DELETE_WAIT_SECONDS,
        help=f"seconds to wait for the drill instance to go (default {DEFAULT_DELETE_WAIT_SECONDS})",
    )
    return parser


def main(argv: list[str] | None = None, restorer: DatabaseRestorer | None = None) -> int:
    """`restorer` lets tests pass one with a recording client or fake clocks."""
    args = build_parser().parse_args(argv)
    # Progress goes to stderr through this logger alone, whatever the root logger does (the apps' JSON logging
    # writes to stdout): stdout carries only the result, which --json callers parse.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        return _run(args, restorer)
    finally:
        log.removeHandler(handler)


def _run(args: argparse.Namespace, restorer: DatabaseRestorer | None) -> int:
    def fail(code: int, message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        if args.json:
            print(json.dumps({"error": message, "exit_code": code}))
        return code

    try:
        limits = {
            "--timeout": args.timeout,
            "--rto-target-seconds": getattr(args, "rto_target_seconds", 1),
            "--delete-timeout": getattr(args, "delete_timeout", 1),
        }
        for option, value in limits.items():
            if value <= 0:
                raise InputError(f"{option} = {value:g} is invalid; allowed: > 0 seconds")
        restorer = restorer or DatabaseRestorer(
            region=args.region, endpoint_url=args.endpoint_url, poll_seconds=args.poll
        )
        if args.command == "drill":
            report = restorer.drill(
                args.source,
                rto_target_seconds=args.rto_target_seconds,
                timeout_seconds=args.timeout,
                delete_timeout_seconds=args.delete_timeout,
            )
            if not args.json:
                print(
                    f"drill {report['drill']}: restored {report['source']} as {report['target']}, "
                    f"RPO {report['rpo_seconds']} s, RTO {report['rto_seconds']} s "
                    f"(target {args.rto_target_seconds:g} s), deleted: {report['deleted']}"
                )
            print(json.dumps(report))
            if report["error"]:
                print(f"error: {report['error']}", file=sys.stderr)
                return EXIT_AWS
            if report["drill"] == "rto-missed":
                print(
                    f"error: the restore took {report['rto_seconds']:g} s, more than the RTO target of "
                    f"{args.rto_target_seconds:g} s (--rto-target-seconds)",
                    file=sys.stderr,
                )
                return EXIT_RTO_MISSED
            return EXIT_OK
        plan = restorer.plan(args.source, time_text=args.time, target=args.target)
        if args.dry_run:
            if args.json:
                print(
                    json.dumps(
                        {
                            "dry_run": True,
                            "request": _json_ready(plan.request),
                            "window": {
                                "earliest": plan.window.earliest.isoformat(),
                                "latest": plan.window.latest.isoformat(),
                            },
                        }
                    )
                )
            else:
                print(
                    f"would restore {plan.source} to "
                    f"{'its latest restorable time' if plan.latest else plan.restore_point.isoformat()} as "
                    f"{plan.target} (window {plan.window.earliest.isoformat()} to {plan.window.latest.isoformat()})"
                )
                print("restore_db_instance_to_point_in_time(")
                print("\n".join(f"    {k}={v!r}," for k, v in _json_ready(plan.request).items()))
                print(")")
            return EXIT_OK
        try:
            result = restorer.restore(plan, args.timeout)
        except RestoreError as error:
            # Not deleted: a slow restore may still finish, and the operator decides.
            raise RestoreError(
                f"{error}; {plan.target} is left as it is: wait with `aws rds wait "
                f"db-instance-available --db-instance-identifier {plan.target}` or delete it"
            ) from error
        if args.json:
            print(json.dumps({**asdict(result), "commands": pulumi_commands(result.target, args.stack)}))
        else:
            print(_restore_text(result, args.stack))
        return EXIT_OK
    except InputError as error:
        return fail(EXIT_INPUT, str(error))
    except (RestoreError, ClientError, BotoCoreError, WaiterError) as error:
        return fail(EXIT_AWS, str(error))


if __name__ == "__main__":
    sys.exit(main())
