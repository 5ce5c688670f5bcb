"""AuditTrail: a CloudTrail trail of the account's management events (every region) and of every read and write of
the buckets holding patients' data, delivered to a separate, locked, KMS-encrypted log bucket with integrity digests.

It answers a regulator's "who accessed this patient's file, by any path": a presigned-URL download appears as a
GetObject data event naming the role that signed the URL (the API's), the time and the source address, beside the
API's own audit log of the download it served.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.key_policy import admin_statement
from components.private_bucket import lock_down

ABORT_MULTIPART_DAYS = 7
# CloudTrail's trail names: 3-128 ASCII letters, digits, `.`, `_`, `-`, starting and ending with a letter or digit,
# no two of `._-` in a row, and not an IP address.
_TRAIL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,126}[A-Za-z0-9]")


@dataclass(frozen=True)
class AuditTrailArgs:
    trail_name: str
    """Name of the trail (unique in the account's region; its ARN is written into the bucket and key policies)."""
    data_event_bucket_arns: Sequence[pulumi.Input[str]]
    """Buckets whose every object read and write is logged (exam results and their replica)."""
    retention_days: int
    """Days a log file is kept before it expires (and, in prod, how long Object Lock keeps it from deletion)."""
    reader_role_arns: Sequence[str] = ()
    """IAM roles of this account that may decrypt the log files (with IAM permissions of their own); none: nobody."""
    retain: bool = False
    """Prod: the log bucket and key are protected and kept when the stack is destroyed, and every log file is locked
    (S3 Object Lock, governance mode) for `retention_days`. Dev: the bucket is emptied and deleted with the stack."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def validate_audit_trail_args(args: AuditTrailArgs) -> None:
    name = args.trail_name
    is_ip = True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        is_ip = False
    if not _TRAIL_NAME.fullmatch(name) or re.search(r"[._-]{2}", name) or is_ip:
        raise ValueError(
            f"trail_name = {name!r} is invalid; allowed: 3-128 letters, digits, '.', '_' or '-', starting and ending "
            "with a letter or digit, no two of '._-' in a row, not an IP address"
        )
    if not 1 <= args.retention_days <= 36500:
        raise ValueError(f"retention_days = {args.retention_days} is invalid; allowed: 1 to 36500")
    if not args.data_event_bucket_arns:
        raise ValueError("data_event_bucket_arns = [] is invalid; allowed: at least the exam bucket's ARN")


def trail_arn(partition: str, region: str, account_id: str, trail_name: str) -> str:
    return f"arn:{partition}:cloudtrail:{region}:{account_id}:trail/{trail_name}"


def trail_key_policy(
    partition: str, region: str, account_id: str, trail_name: str, reader_role_arns: Sequence[str] = ()
) -> str:
    """CloudTrail may encrypt this trail's log and digest files only; the named readers may decrypt CloudTrail files
    (and nothing else) through S3 when they read them, if their IAM allows it too. Nobody else may use the key."""
    trail = trail_arn(partition, region, account_id, trail_name)
    cloudtrail_files = {
        "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:{partition}:cloudtrail:*:{account_id}:trail/*"
    }
    statements: list[dict[str, object]] = [
        admin_statement(partition, account_id),
        {
            "Sid": "CloudTrailEncryptsThisTrail",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:GenerateDataKey*",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": trail}, "StringLike": cloudtrail_files},
        },
        {
            "Sid": "CloudTrailDescribesKey",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceArn": trail}},
        },
    ]
    if reader_role_arns:
        statements.append(
            {
                "Sid": "AuditorsReadLogFiles",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": ["kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {
                    "ArnLike": {"aws:PrincipalArn": sorted(reader_role_arns)},
                    "StringEquals": {"kms:CallerAccount": account_id, "kms:ViaService": f"s3.{region}.amazonaws.com"},
                    "StringLike": cloudtrail_files,
                },
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def log_bucket_policy(bucket_arn: str, partition: str, region: str, account_id: str, trail_name: str) -> str:
    """TLS 1.2+ only; CloudTrail, for this trail only (aws:SourceArn), may check the bucket's ACL and write under
    AWSLogs/<account>/. Nothing else is granted: readers need IAM permissions of their own."""
    trail = trail_arn(partition, region, account_id, trail_name)
    everything = [bucket_arn, f"{bucket_arn}/*"]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": everything,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "DenyOutdatedTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": everything,
                    "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
                },
                {
                    "Sid": "CloudTrailAclCheck",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudtrail.amazonaws.com"},
                    "Action": "s3:GetBucketAcl",
                    "Resource": bucket_arn,
                    "Condition": {"StringEquals": {"aws:SourceArn": trail}},
                },
                {
                    "Sid": "CloudTrailWrite",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudtrail.amazonaws.com"},
                    "Action": "s3:PutObject",
                    "Resource": f"{bucket_arn}/AWSLogs/{account_id}/*",
                    "Condition": {
                        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail}
                    },
                },
            ],
        }
    )


def event_selectors(bucket_arns: Sequence[str]) -> list[aws.cloudtrail.TrailAdvancedEventSelectorArgsDict]:
    """Every management event (read and write, every service), and every S3 object-level event (GetObject,
    PutObject, DeleteObject, ...) on the named buckets' objects."""
    return [
        {"name": "management", "field_selectors": [{"field": "eventCategory", "equals": ["Management"]}]},
        {
            "name": "patient-data-objects",
            "field_selectors": [
                {"field": "eventCategory", "equals": ["Data"]},
                {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                {"field": "resources.ARN", "starts_withs": [f"{arn}/" for arn in bucket_arns]},
            ],
        },
    ]


class AuditTrail(pulumi.ComponentResource):
    trail_arn: pulumi.Output[str]
    """ARN of the trail."""
    log_bucket_name: pulumi.Output[str]
    """Bucket receiving the log files and their digests (AWSLogs/<account>/CloudTrail[-Digest]/...)."""
    kms_key_arn: pulumi.Output[str]
    """Key encrypting the log files (readers need kms:Decrypt on it through IAM)."""

    def __init__(self, name: str, args: AuditTrailArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:AuditTrail", name, None, opts)
        validate_audit_trail_args(args)
        tags = dict(args.tags)
        retain = args.retain
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=retain, retain_on_delete=retain)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        region = aws.get_region_output(opts=invoke).region
        account_id = aws.get_caller_identity_output(opts=invoke).account_id

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: CloudTrail log files",
            enable_key_rotation=True,
            policy=pulumi.Output.all(partition, region, account_id).apply(
                lambda a: trail_key_policy(a[0], a[1], a[2], args.trail_name, args.reader_role_arns)
            ),
            deletion_window_in_days=30 if retain else 7,
            tags=tags,
            opts=keep,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}", target_key_id=key.key_id, opts=child)

        bucket = aws.s3.Bucket(
            f"{name}-logs",
            # Dev: emptied (every version) and deleted with the stack. Prod: kept, and its objects locked.
            force_destroy=not retain,
            # Object Lock can only be turned on when a bucket is created.
            object_lock_enabled=retain,
            tags=tags,
            opts=keep,
        )
        on_bucket = pulumi.ResourceOptions(parent=bucket)
        # CloudTrail encrypts each file under its own context (the trail's ARN), which the key policy checks; an S3
        # Bucket Key would replace that context with the bucket's.
        locked_down = lock_down(f"{name}-logs", bucket, key.arn, on_bucket, bucket_key=False)
        ownership, public_block = locked_down.ownership, locked_down.public_block
        versioning, encryption = locked_down.versioning, locked_down.encryption
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-logs-lifecycle",
            bucket=bucket.id,
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
            rules=[
                {
                    "id": "expire-log-files",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": args.retention_days},
                    # A file's only older version is the one its expiry hid; Object Lock still holds it until its
                    # retention ends (lifecycle skips locked versions and takes them on a later run).
                    "noncurrent_version_expiration": {"noncurrent_days": 1},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
                },
                {
                    # S3 refuses ExpiredObjectDeleteMarker beside Days in one rule's expiration.
                    "id": "remove-expired-delete-markers",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"expired_object_delete_marker": True},
                },
            ],
        )
        locked: list[pulumi.Resource] = []
        if retain:
            # Governance, not compliance, mode: no one lacking s3:BypassGovernanceRetention can delete or overwrite a
            # log file before its retention ends, yet an administrator holding it can still correct a mistaken
            # retention. Compliance mode could not be undone by anyone, the account root included.
            locked.append(
                aws.s3.BucketObjectLockConfiguration(
                    f"{name}-logs-object-lock",
                    bucket=bucket.id,
                    object_lock_enabled="Enabled",
                    rule={"default_retention": {"mode": "GOVERNANCE", "days": args.retention_days}},
                    opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
                )
            )
        policy = aws.s3.BucketPolicy(
            f"{name}-logs-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, partition, region, account_id).apply(
                lambda a: log_bucket_policy(a[0], a[1], a[2], a[3], args.trail_name)
            ),
            # S3 rejects a policy put while the public-access block is being changed.
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_block]),
        )

        trail = aws.cloudtrail.Trail(
            f"{name}-trail",
            # Named, not auto-named: the bucket and key policies name the trail's ARN before it exists.
            name=args.trail_name,
            s3_bucket_name=bucket.id,
            kms_key_id=key.arn,
            is_multi_region_trail=True,
            include_global_service_events=True,
            enable_log_file_validation=True,
            advanced_event_selectors=pulumi.Output.all(*args.data_event_bucket_arns).apply(event_selectors),
            tags=tags,
            # CreateTrail checks the bucket policy (InsufficientS3BucketPolicyException) and the key policy
            # (InsufficientEncryptionPolicyException) at once; on destroy the trail stops writing before its
            # bucket is emptied and deleted.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, encryption, ownership, *locked]),
        )

        self.trail_arn = trail.arn
        self.log_bucket_name = bucket.bucket
        self.kms_key_arn = key.arn
        self.register_outputs(
            {"trail_arn": self.trail_arn, "log_bucket_name": self.log_bucket_name, "kms_key_arn": self.kms_key_arn}
        )
