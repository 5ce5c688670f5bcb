"""AuditTrail over both committed stacks: a multi-region, validated, KMS-encrypted trail of management events and of
every object read and write in the exam bucket (and prod's replica), delivered to a locked log bucket that only
CloudTrail, for this trail, may write to; prod keeps the bucket, dev tears it down."""

import pytest

from components.audit_trail import AuditTrail, AuditTrailArgs, validate_audit_trail_args
from tests.infra.pulumi_mocks import ACCOUNT_ID, evaluate

TRAIL = "aws:cloudtrail/trail:Trail"
BUCKET = "aws:s3/bucket:Bucket"
KEY = "aws:kms/key:Key"


def log_bucket(graph):
    return graph.one(BUCKET, next(b.name for b in graph.of_type(BUCKET) if b.name.endswith("-audit-logs")))


def log_bucket_child(graph, typ):
    bucket = log_bucket(graph)
    found = [r for r in graph.of_type(typ) if r.parent == bucket.urn]
    assert len(found) == 1, f"expected one {typ} on {bucket.name}, found {[r.name for r in found]}"
    assert found[0].inputs["bucket"] == bucket.state["bucket"], f"{found[0].name} must target {bucket.name}"
    return found[0]


def trail_key(graph):
    return graph.one(KEY, next(k.name for k in graph.of_type(KEY) if k.name.endswith("-audit-key")))


def test_the_trail_covers_every_region_and_global_services_with_integrity_digests(stack):
    trail = stack.one(TRAIL)
    assert trail.inputs["isMultiRegionTrail"] is True, trail.name
    assert trail.inputs["includeGlobalServiceEvents"] is True, trail.name
    assert trail.inputs["enableLogFileValidation"] is True, f"{trail.name}: log files could be altered unseen"
    assert trail.inputs["kmsKeyId"] == trail_key(stack).state["arn"], f"{trail.name} is not encrypted with its key"
    assert trail.inputs["s3BucketName"] == log_bucket(stack).state["bucket"]


def test_every_management_event_and_every_exam_object_event_is_logged(dev, prod):
    for graph, buckets in (
        (dev, ["clinic-dev-exams-bucket"]),
        (prod, ["clinic-prod-exams-bucket", "clinic-prod-exams-replica"]),
    ):
        selectors = {s["name"]: s["fieldSelectors"] for s in graph.one(TRAIL).inputs["advancedEventSelectors"]}
        assert selectors["management"] == [{"field": "eventCategory", "equals": ["Management"]}]
        data = {f["field"]: f for f in selectors["patient-data-objects"]}
        assert data["eventCategory"]["equals"] == ["Data"] and data["resources.type"]["equals"] == ["AWS::S3::Object"]
        # No readOnly selector: reads (GetObject, presigned downloads included) and writes alike.
        assert "readOnly" not in data
        arns = [graph.one(BUCKET, b).state["arn"] + "/" for b in buckets]
        assert data["resources.ARN"]["startsWiths"] == arns


def test_the_log_bucket_is_private_versioned_and_encrypted_with_the_trail_key(stack):
    block = log_bucket_child(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block.inputs[f] is True
        for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    ownership = log_bucket_child(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"
    versioning = log_bucket_child(stack, "aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    (rule,) = log_bucket_child(
        stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms",
        "kmsMasterKeyId": trail_key(stack).state["arn"],
    }


def test_only_this_trail_may_write_and_only_over_tls(stack):
    policy = log_bucket_child(stack, "aws:s3/bucketPolicy:BucketPolicy")
    statements = {s["Sid"]: s for s in policy.input("policy", "Statement")}
    bucket_arn = log_bucket(stack).state["arn"]
    trail_arn = f"arn:aws:cloudtrail:eu-west-1:{ACCOUNT_ID}:trail/{stack.one(TRAIL).inputs['name']}"
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statements["DenyInsecureTransport"]["Effect"] == "Deny"
    acl = statements["CloudTrailAclCheck"]
    assert (acl["Principal"], acl["Action"], acl["Resource"]) == (
        {"Service": "cloudtrail.amazonaws.com"},
        "s3:GetBucketAcl",
        bucket_arn,
    )
    write = statements["CloudTrailWrite"]
    assert write["Action"] == "s3:PutObject" and write["Resource"] == f"{bucket_arn}/AWSLogs/{ACCOUNT_ID}/*"
    for statement in (acl, write):
        assert statement["Condition"]["StringEquals"]["aws:SourceArn"] == trail_arn, "another trail could write here"
    allowed = [s for s in statements.values() if s["Effect"] == "Allow"]
    assert {s["Principal"]["Service"] for s in allowed} == {"cloudtrail.amazonaws.com"}, "the policy grants no reader"


def test_the_trail_key_lets_only_cloudtrail_encrypt_this_trail_and_admins_not_use_it(stack):
    statements = {s["Sid"]: s for s in trail_key(stack).input("policy", "Statement")}
    trail_arn = f"arn:aws:cloudtrail:eu-west-1:{ACCOUNT_ID}:trail/{stack.one(TRAIL).inputs['name']}"
    encrypt = statements["CloudTrailEncryptsThisTrail"]
    assert encrypt["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert encrypt["Action"] == "kms:GenerateDataKey*"
    assert encrypt["Condition"]["StringEquals"] == {"aws:SourceArn": trail_arn}
    assert encrypt["Condition"]["StringLike"] == {
        "kms:EncryptionContext:aws:cloudtrail:arn": f"arn:aws:cloudtrail:*:{ACCOUNT_ID}:trail/*"
    }
    admin = statements["AccountAdministers"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    using = {"kms:*", "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:CreateGrant"}
    assert not using & set(admin["Action"]), "administrators must not be able to use or grant the key"
    # The committed stacks name no auditor: nobody may read the files until audit.readerRoleArns names one.
    assert set(statements) == {"AccountAdministers", "CloudTrailEncryptsThisTrail", "CloudTrailDescribesKey"}
    assert trail_key(stack).inputs["enableKeyRotation"] is True


def test_named_auditors_may_decrypt_cloudtrail_files_through_s3_only():
    auditor = f"arn:aws:iam::{ACCOUNT_ID}:role/clinic-auditor"
    graph = evaluate(
        lambda: AuditTrail(
            "a",
            AuditTrailArgs(
                trail_name="clinic-dev-audit",
                data_event_bucket_arns=["arn:aws:s3:::b"],
                retention_days=14,
                reader_role_arns=[auditor],
            ),
        ),
        stack="dev",
    )
    statements = {s["Sid"]: s for s in graph.one(KEY).input("policy", "Statement")}
    read = statements["AuditorsReadLogFiles"]
    assert read["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert read["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}, "IAM must allow it too"
    assert read["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": [auditor]},
        "StringEquals": {"kms:CallerAccount": ACCOUNT_ID, "kms:ViaService": "s3.eu-west-1.amazonaws.com"},
        "StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": f"arn:aws:cloudtrail:*:{ACCOUNT_ID}:trail/*"},
    }


def test_the_trail_is_created_after_the_bucket_policy_and_deleted_before_its_bucket(stack):
    """CreateTrail checks the bucket policy on the spot (InsufficientS3BucketPolicyException)."""
    trail = stack.one(TRAIL)
    policy = log_bucket_child(stack, "aws:s3/bucketPolicy:BucketPolicy")
    assert policy.urn in trail.dependencies, "the trail may be created before CloudTrail is allowed to write"
    encryption = log_bucket_child(
        stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert encryption.urn in trail.dependencies
    assert stack.deleted_before(trail, log_bucket(stack)), "the bucket would be deleted while the trail writes to it"
    assert stack.deleted_before(trail, trail_key(stack))


def test_log_files_expire_after_the_stacks_retention(dev, prod):
    for graph, days in ((dev, 14), (prod, 2557)):
        rules = {
            r["id"]: r
            for r in log_bucket_child(graph, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs[
                "rules"
            ]
        }
        assert rules["expire-log-files"]["expiration"]["days"] == days
        assert rules["remove-expired-delete-markers"]["expiration"] == {"expiredObjectDeleteMarker": True}


def test_prod_keeps_the_log_bucket_and_key_and_locks_every_log_file_for_its_retention(prod):
    bucket, key = log_bucket(prod), trail_key(prod)
    assert bucket.inputs["forceDestroy"] is False and bucket.inputs["objectLockEnabled"] is True
    assert bucket.protect and bucket.retain_on_delete, bucket.name
    assert key.protect and key.retain_on_delete, "retained log files need their key"
    lock = log_bucket_child(prod, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")
    assert lock.inputs["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": 2557}
    assert lock.urn in prod.one(TRAIL).dependencies, "files delivered before the lock would be unlocked"


def test_dev_tears_the_log_bucket_down_with_its_files(dev):
    bucket, key = log_bucket(dev), trail_key(dev)
    assert bucket.inputs["forceDestroy"] is True and not bucket.inputs.get("objectLockEnabled")
    assert not (bucket.protect or bucket.retain_on_delete or key.protect or key.retain_on_delete)
    assert not dev.of_type("aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration")


@pytest.mark.parametrize(
    "name",
    ["ab", "-clinic", "clinic-", "clinic--audit", "clinic._audit", "192.168.5.4", "clinic audit", "a" * 129],
)
def test_a_trail_name_cloudtrail_would_refuse_is_an_error_before_anything_is_registered(name):
    args = AuditTrailArgs(trail_name=name, data_event_bucket_arns=["arn:aws:s3:::b"], retention_days=14)
    with pytest.raises(ValueError, match=rf"trail_name = {name!r} is invalid; allowed: 3-128 letters"):
        validate_audit_trail_args(args)
    graph = None
    with pytest.raises(ValueError):
        graph = evaluate(lambda: AuditTrail("a", args), stack="dev")
    assert graph is None


def test_a_trail_without_buckets_or_with_a_bad_retention_is_refused():
    with pytest.raises(ValueError, match=r"data_event_bucket_arns = \[\] is invalid"):
        validate_audit_trail_args(
            AuditTrailArgs(trail_name="clinic-dev-audit", data_event_bucket_arns=[], retention_days=14)
        )
    with pytest.raises(ValueError, match=r"retention_days = 0 is invalid; allowed: 1 to 36500"):
        validate_audit_trail_args(
            AuditTrailArgs(trail_name="clinic-dev-audit", data_event_bucket_arns=["arn:aws:s3:::b"], retention_days=0)
        )
