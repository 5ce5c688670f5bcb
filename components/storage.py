"""Storage: the bucket holding patients' exam-result PDFs and, in prod, its replica in a second region."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.key_policy import DECRYPT, KeyUser, account_context, admin_statement, key_policy, validate_key_users
from components.private_bucket import lock_down
from limits import REGION_PATTERN

ABORT_MULTIPART_DAYS = 7
CORS_MAX_AGE_SECONDS = 3000
# S3 Replication Time Control: 99.99 % of new objects replicated within 15 minutes (AWS's SLA), with replication
# metrics and an event for every object that misses it. This is the PDFs' recovery point objective.
REPLICATION_MINUTES = 15
# The replica is read only to recover: infrequent-access storage costs ~45 % less than standard (30-day minimum,
# 128 KB minimum object size, a per-GB retrieval charge on a restore).
REPLICA_STORAGE_CLASS = "STANDARD_IA"
_REGION = re.compile(REGION_PATTERN)


@dataclass(frozen=True)
class StorageArgs:
    noncurrent_version_days: int
    """Days a replaced or deleted PDF version is kept (the recovery window for overwritten results)."""
    cors_allowed_origins: Sequence[str] = ()
    """Browser origins allowed to use presigned PUT/GET URLs; none means no CORS rule at all."""
    retain: bool = False
    """Prod: protect the bucket and keep it (with every version) when the stack is destroyed. Dev: the bucket is
    emptied, versions and delete markers included, and deleted with the stack."""
    region: str | None = None
    """Region of the stack (the bucket's); required with `replica_region`."""
    replica_region: str | None = None
    """A second region where every new PDF is replicated, under that region's own key; None: no replica."""
    replica_reader_role_arns: Sequence[str] = ()
    """IAM roles of this account that may decrypt the replica to restore PDFs from it (operators)."""
    key_users: Sequence[KeyUser] = ()
    """Who may use the exam key, through which services (the key policy names nobody else); the replication role
    is added here when there is a replica."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def validate_storage_args(args: StorageArgs) -> None:
    validate_key_users(args.key_users)
    if not 1 <= args.noncurrent_version_days <= 3650:
        raise ValueError(f"noncurrent_version_days = {args.noncurrent_version_days} is invalid; allowed: 1 to 3650")
    for origin in args.cors_allowed_origins:
        if "*" in origin:
            raise ValueError(f"cors_allowed_origins entry {origin!r} is invalid; allowed: exact origins, no wildcard")
    if args.replica_region is not None:
        if args.region is None or not _REGION.fullmatch(args.region):
            raise ValueError(
                f"region = {args.region!r} is invalid with a replica_region; allowed: the stack's AWS region"
            )
        if args.replica_region == args.region or not _REGION.fullmatch(args.replica_region):
            raise ValueError(
                f"replica_region = {args.replica_region!r} is invalid; allowed: an AWS region other than "
                f"{args.region}, or None"
            )


def bucket_policy(bucket_arn: str, kms_key_arn: str) -> str:
    """TLS 1.2+ only, and no object stored under another encryption than this bucket's KMS key."""
    objects = f"{bucket_arn}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, objects],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
                {
                    "Sid": "DenyOutdatedTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, objects],
                    "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
                },
                {
                    "Sid": "DenyOtherEncryption",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": objects,
                    "Condition": {"StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption": "aws:kms"}},
                },
                {
                    "Sid": "DenyOtherKmsKey",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:PutObject",
                    "Resource": objects,
                    "Condition": {
                        "StringNotEqualsIfExists": {"s3:x-amz-server-side-encryption-aws-kms-key-id": kms_key_arn}
                    },
                },
            ],
        }
    )


def replication_rule_id(replica_region: str) -> str:
    return f"exams-to-{replica_region}"


def replication_trust_policy() -> str:
    """S3 assumes the role only for a bucket whose replication configuration names it, which only someone allowed to
    pass the role (iam:PassRole, this account) can write."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def _s3_context(bucket_arn: str) -> list[str]:
    # With an S3 Bucket Key the encryption context is the bucket's ARN, without one the object's.
    return [bucket_arn, f"{bucket_arn}/*"]


def replication_role_policy(
    source_arn: str, source_key_arn: str, region: str, replica_arn: str, replica_key_arn: str, replica_region: str
) -> str:
    """Read the source's versions and replication configuration, write replicas and their tags (not deletes: delete
    markers are not replicated), decrypt with the source key and encrypt with the replica's, each only through S3
    in its own region and for its own bucket."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ReadSourceConfiguration",
                    "Effect": "Allow",
                    "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"],
                    "Resource": source_arn,
                },
                {
                    "Sid": "ReadSourceVersions",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetObjectVersionForReplication",
                        "s3:GetObjectVersionAcl",
                        "s3:GetObjectVersionTagging",
                    ],
                    "Resource": f"{source_arn}/*",
                },
                {
                    "Sid": "WriteReplicas",
                    "Effect": "Allow",
                    "Action": ["s3:ReplicateObject", "s3:ReplicateTags"],
                    "Resource": f"{replica_arn}/*",
                },
                {
                    "Sid": "DecryptSource",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": source_key_arn,
                    "Condition": {
                        "StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"},
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": _s3_context(source_arn)},
                    },
                },
                {
                    "Sid": "EncryptReplicas",
                    "Effect": "Allow",
                    "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
                    "Resource": replica_key_arn,
                    "Condition": {
                        "StringEquals": {"kms:ViaService": f"s3.{replica_region}.amazonaws.com"},
                        "StringLike": {"kms:EncryptionContext:aws:s3:arn": _s3_context(replica_arn)},
                    },
                },
            ],
        }
    )


def replica_key_policy(
    partition: str, account_id: str, replica_region: str, role_arn: str, reader_role_arns: Sequence[str] = ()
) -> str:
    """Administered without use; the replication role encrypts replicas and the named readers (operators restoring
    PDFs) decrypt them, each only through S3 in the replica's region and with an IAM policy of their own. Roles are
    named by aws:PrincipalArn, not as principals: KMS would refuse a principal that does not exist yet, and the
    replication role's own policy names this key, so neither could be created first."""
    account = {"AWS": f"arn:{partition}:iam::{account_id}:root"}
    via_s3 = {"kms:CallerAccount": account_id, "kms:ViaService": f"s3.{replica_region}.amazonaws.com"}
    statements: list[dict[str, object]] = [
        admin_statement(partition, account_id),
        {
            "Sid": "ReplicationEncryptsReplicas",
            "Effect": "Allow",
            "Principal": account,
            "Action": ["kms:Encrypt", "kms:GenerateDataKey"],
            "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": [role_arn]}, "StringEquals": via_s3},
        },
    ]
    if reader_role_arns:
        statements.append(
            {
                "Sid": "OperatorsReadReplicas",
                "Effect": "Allow",
                "Principal": account,
                "Action": ["kms:Decrypt", "kms:DescribeKey"],
                "Resource": "*",
                "Condition": {"ArnLike": {"aws:PrincipalArn": sorted(reader_role_arns)}, "StringEquals": via_s3},
            }
        )
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


class Storage(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    """Name of the exam-results bucket."""
    bucket_arn: pulumi.Output[str]
    """ARN of the exam-results bucket."""
    kms_key_arn: pulumi.Output[str]
    """Key encrypting every object (workloads need kms:GenerateDataKey/Decrypt on it)."""
    replica_bucket_arn: pulumi.Output[str] | None
    """ARN of the replica in the second region (None without one)."""
    replica_bucket_name: pulumi.Output[str] | None
    """Name of the replica (None without one)."""
    replication_rule_id: str | None
    """Id of the replication rule (its CloudWatch metrics carry it); None without a replica."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Storage", name, None, opts)
        validate_storage_args(args)
        if args.replica_region is not None and len(f"{name}-replication") > 64:
            raise ValueError(
                f"name = {name!r} is invalid with a replica_region: the replication role {name}-replication would "
                "exceed IAM's 64 characters; allowed: a name of at most 52 characters"
            )
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        key_users = list(args.key_users)
        if args.replica_region is not None:
            # S3 reads each source PDF as the replication role (named below, before it exists) to replicate it.
            key_users.append(KeyUser("ReplicationReadsExams", [f"{name}-replication"], ["s3"], actions=DECRYPT))
        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: exam results",
            enable_key_rotation=True,
            deletion_window_in_days=30 if args.retain else 7,
            policy=account_context(self).apply(lambda c: key_policy(*c, users=key_users)),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.retain, retain_on_delete=args.retain),
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}", target_key_id=key.key_id, opts=child)

        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            # force_destroy deletes every object version and delete marker before the bucket: dev only.
            force_destroy=not args.retain,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.retain, retain_on_delete=args.retain),
        )
        on_bucket = pulumi.ResourceOptions(parent=bucket)

        locked_down = lock_down(name, bucket, key.arn, on_bucket)
        public_block, versioning = locked_down.public_block, locked_down.versioning
        aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda a: bucket_policy(a[0], a[1])),
            # S3 rejects a policy put while the public-access block is being changed.
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_block]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            opts=on_bucket,
            rules=[
                {
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days},
                    "expiration": {"expired_object_delete_marker": True},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
                }
            ],
        )
        if args.cors_allowed_origins:
            aws.s3.BucketCorsConfiguration(
                f"{name}-cors",
                bucket=bucket.id,
                opts=on_bucket,
                cors_rules=[
                    {
                        "allowed_methods": ["GET", "HEAD", "PUT"],
                        "allowed_origins": list(args.cors_allowed_origins),
                        "allowed_headers": ["content-type", "content-md5", "x-amz-*"],
                        "expose_headers": ["ETag"],
                        "max_age_seconds": CORS_MAX_AGE_SECONDS,
                    }
                ],
            )

        self.replica_bucket_arn = self.replica_bucket_name = self.replication_rule_id = None
        if args.replica_region is not None:
            assert args.region is not None  # validate_storage_args
            replica = self._replicate(name, args, bucket, versioning, key, args.region, tags)
            self.replica_bucket_arn, self.replica_bucket_name = replica.arn, replica.bucket
            self.replication_rule_id = replication_rule_id(args.replica_region)

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "bucket_arn": self.bucket_arn,
                "kms_key_arn": self.kms_key_arn,
                "replica_bucket_arn": self.replica_bucket_arn,
                "replica_bucket_name": self.replica_bucket_name,
            }
        )

    def _replicate(
        self,
        name: str,
        args: StorageArgs,
        source: aws.s3.Bucket,
        source_versioning: aws.s3.BucketVersioning,
        source_key: aws.kms.Key,
        region: str,
        tags: dict[str, str],
    ) -> aws.s3.Bucket:
        """A replica bucket in `args.replica_region` under that region's own key, and the rule that copies every new
        PDF version there. Returns the replica."""
        replica_region = args.replica_region
        assert replica_region is not None
        retain = args.retain
        invoke = pulumi.InvokeOutputOptions(parent=self)
        partition = aws.get_partition_output(opts=invoke).partition
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        # A provider of its own for the replica's region, with the default provider's credentials (as the backup's
        # copy vault has).
        provider = aws.Provider(
            f"{name}-replica-region", region=replica_region, opts=pulumi.ResourceOptions(parent=self)
        )
        there = pulumi.ResourceOptions(parent=self, provider=provider)
        keep_there = pulumi.ResourceOptions(parent=self, provider=provider, protect=retain, retain_on_delete=retain)

        # Named, not auto-named: the replica key's policy names the role's ARN before the role exists.
        role_name = f"{name}-replication"
        role = aws.iam.Role(
            f"{name}-replication-role",
            name=role_name,
            description=f"{name}: S3 replicates exam PDFs to {replica_region}",
            assume_role_policy=replication_trust_policy(),
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        key = aws.kms.Key(
            f"{name}-replica-key",
            description=f"{name}: exam results replica",
            enable_key_rotation=True,
            deletion_window_in_days=30 if retain else 7,
            policy=pulumi.Output.all(partition, account_id).apply(
                lambda a: replica_key_policy(
                    a[0],
                    a[1],
                    replica_region,
                    f"arn:{a[0]}:iam::{a[1]}:role/{role_name}",
                    args.replica_reader_role_arns,
                )
            ),
            tags=tags,
            opts=keep_there,
        )
        aws.kms.Alias(f"{name}-replica-key-alias", name=f"alias/{name}-replica", target_key_id=key.key_id, opts=there)

        replica = aws.s3.Bucket(f"{name}-replica", force_destroy=not retain, tags=tags, opts=keep_there)
        on_replica = pulumi.ResourceOptions(parent=replica, provider=provider)
        locked_down = lock_down(f"{name}-replica", replica, key.arn, on_replica)
        public_block, replica_versioning = locked_down.public_block, locked_down.versioning
        aws.s3.BucketPolicy(
            f"{name}-replica-policy",
            bucket=replica.id,
            policy=pulumi.Output.all(replica.arn, key.arn).apply(lambda a: bucket_policy(a[0], a[1])),
            opts=pulumi.ResourceOptions(parent=replica, provider=provider, depends_on=[public_block]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-replica-lifecycle",
            bucket=replica.id,
            opts=on_replica,
            rules=[
                {
                    # An overwritten PDF's older replica is kept as long as the source keeps its own.
                    "id": "expire-noncurrent-versions",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_version_days},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
                }
            ],
        )

        role_policy = aws.iam.RolePolicy(
            f"{name}-replication-policy",
            role=role.id,
            policy=pulumi.Output.all(source.arn, source_key.arn, replica.arn, key.arn).apply(
                lambda a: replication_role_policy(a[0], a[1], region, a[2], a[3], replica_region)
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        aws.s3.BucketReplicationConfig(
            f"{name}-replication",
            bucket=source.id,
            role=role.arn,
            rules=[
                {
                    "id": replication_rule_id(replica_region),
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    # Delete markers stay in the source: a PDF deleted there (by mistake, or by whoever took the
                    # API's credentials) is still current in the replica. Permanent deletions of versions are never
                    # replicated by S3. A deliberate erasure is made in both buckets (README).
                    "delete_marker_replication": {"status": "Disabled"},
                    # Every PDF is SSE-KMS: without this S3 skips them all.
                    "source_selection_criteria": {"sse_kms_encrypted_objects": {"status": "Enabled"}},
                    "destination": {
                        "bucket": replica.arn,
                        "storage_class": REPLICA_STORAGE_CLASS,
                        "encryption_configuration": {"replica_kms_key_id": key.arn},
                        "replication_time": {"status": "Enabled", "time": {"minutes": REPLICATION_MINUTES}},
                        "metrics": {"status": "Enabled", "event_threshold": {"minutes": REPLICATION_MINUTES}},
                    },
                }
            ],
            # S3 refuses a replication configuration unless both buckets are versioned; the role must be able to
            # act on the first object written after it.
            opts=pulumi.ResourceOptions(parent=source, depends_on=[source_versioning, replica_versioning, role_policy]),
        )
        return replica
