"""Storage: the bucket holding patients' exam-result PDFs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

ABORT_MULTIPART_DAYS = 7
CORS_MAX_AGE_SECONDS = 3000


@dataclass(frozen=True)
class StorageArgs:
    noncurrent_version_days: int
    """Days a replaced or deleted PDF version is kept (the recovery window for overwritten results)."""
    cors_allowed_origins: Sequence[str] = ()
    """Browser origins allowed to use presigned PUT/GET URLs; none means no CORS rule at all."""
    retain: bool = False
    """Prod: protect the bucket and keep it (with every version) when the stack is destroyed. Dev: the bucket is
    emptied, versions and delete markers included, and deleted with the stack."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def validate_storage_args(args: StorageArgs) -> None:
    if not 1 <= args.noncurrent_version_days <= 3650:
        raise ValueError(f"noncurrent_version_days = {args.noncurrent_version_days} is invalid; allowed: 1 to 3650")
    for origin in args.cors_allowed_origins:
        if "*" in origin:
            raise ValueError(f"cors_allowed_origins entry {origin!r} is invalid; allowed: exact origins, no wildcard")


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


class Storage(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    """Name of the exam-results bucket."""
    bucket_arn: pulumi.Output[str]
    """ARN of the exam-results bucket."""
    kms_key_arn: pulumi.Output[str]
    """Key encrypting every object (workloads need kms:GenerateDataKey/Decrypt on it)."""

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Storage", name, None, opts)
        validate_storage_args(args)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: exam results",
            enable_key_rotation=True,
            deletion_window_in_days=30 if args.retain else 7,
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

        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=on_bucket
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=on_bucket,
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=on_bucket
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            opts=on_bucket,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": key.arn,
                    },
                    # One data key per bucket rather than per object: far fewer KMS calls for PDF downloads.
                    "bucket_key_enabled": True,
                }
            ],
        )
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

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.register_outputs(
            {"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn, "kms_key_arn": self.kms_key_arn}
        )
