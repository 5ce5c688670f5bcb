"""The settings every bucket of patient data or audit logs carries (a helper module, not a component): ACLs off,
public access blocked, versioned, encrypted under the clinic's KMS key."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class PrivateBucket:
    """What `lock_down` made: callers order their policies, lifecycles and replication after these."""

    ownership: aws.s3.BucketOwnershipControls
    public_block: aws.s3.BucketPublicAccessBlock
    versioning: aws.s3.BucketVersioning
    encryption: aws.s3.BucketServerSideEncryptionConfiguration


def lock_down(
    prefix: str,
    bucket: aws.s3.Bucket,
    key_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    *,
    bucket_key: bool = True,
) -> PrivateBucket:
    """Children `<prefix>-ownership`, `-public-access-block`, `-versioning` and `-encryption` of `bucket`, with
    `opts` (its parent and provider). `bucket_key`: one data key per bucket rather than per object, far fewer KMS
    calls; off where a service encrypts each object under its own encryption context (CloudTrail)."""
    ownership = aws.s3.BucketOwnershipControls(
        f"{prefix}-ownership", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=opts
    )
    public_block = aws.s3.BucketPublicAccessBlock(
        f"{prefix}-public-access-block",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )
    versioning = aws.s3.BucketVersioning(
        f"{prefix}-versioning", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=opts
    )
    encryption = aws.s3.BucketServerSideEncryptionConfiguration(
        f"{prefix}-encryption",
        bucket=bucket.id,
        opts=opts,
        rules=[
            {
                "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key_arn},
                "bucket_key_enabled": bucket_key,
            }
        ],
    )
    return PrivateBucket(ownership=ownership, public_block=public_block, versioning=versioning, encryption=encryption)
