"""Storage: the exam bucket is private, TLS-only, KMS-encrypted and versioned; prod keeps it, dev empties it."""

import pytest

from components.storage import Storage, StorageArgs
from tests.infra.pulumi_mocks import evaluate

BUCKET = "aws:s3/bucket:Bucket"


def bucket_child(graph, typ):
    found = graph.of_type(typ)
    assert len(found) == 1, f"expected one {typ}"
    assert found[0].inputs["bucket"] == graph.one(BUCKET).state["bucket"], f"{typ} must target the exam bucket"
    return found[0]


def test_all_public_access_is_blocked_and_acls_are_disabled(stack):
    block = bucket_child(stack, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[flag] is True, flag
    ownership = bucket_child(stack, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"


def test_objects_are_encrypted_with_the_bucket_kms_key(stack):
    sse = bucket_child(stack, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    rule = sse.inputs["rules"][0]
    key = stack.one("aws:kms/key:Key", next(k.name for k in stack.of_type("aws:kms/key:Key") if "exams" in k.name))
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key.state["arn"]}
    assert rule["bucketKeyEnabled"] is True


def test_bucket_policy_denies_plain_http_old_tls_and_other_encryption(stack):
    policy = bucket_child(stack, "aws:s3/bucketPolicy:BucketPolicy")
    statements = {s["Sid"]: s for s in policy.input("policy", "Statement")}
    insecure = statements["DenyInsecureTransport"]
    assert insecure["Effect"] == "Deny" and insecure["Principal"] == "*" and insecure["Action"] == "s3:*"
    assert insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket_arn = stack.one(BUCKET).state["arn"]
    assert sorted(insecure["Resource"]) == sorted([bucket_arn, f"{bucket_arn}/*"])
    assert statements["DenyOutdatedTls"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    assert statements["DenyOtherEncryption"]["Condition"]["StringNotEqualsIfExists"] == {
        "s3:x-amz-server-side-encryption": "aws:kms"
    }
    assert not [s for s in statements.values() if s["Effect"] == "Allow"], "the policy must grant nothing"


def test_versioning_is_on_and_noncurrent_versions_expire(dev, prod):
    for graph, days in ((dev, 7), (prod, 365)):
        versioning = bucket_child(graph, "aws:s3/bucketVersioning:BucketVersioning")
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
        rule = bucket_child(graph, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"][
            0
        ]
        assert rule["status"] == "Enabled"
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days
        assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7


def test_cors_allows_only_configured_origins_for_presigned_uploads(dev, prod):
    for graph, origin in ((dev, "http://localhost:5173"), (prod, "https://clinic.example.org")):
        rule = bucket_child(graph, "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration").inputs["corsRules"][0]
        assert rule["allowedOrigins"] == [origin]
        assert sorted(rule["allowedMethods"]) == ["GET", "HEAD", "PUT"]


def test_no_cors_rule_without_origins():
    graph = evaluate(lambda: Storage("s", StorageArgs(noncurrent_version_days=7)), stack="dev")
    assert not graph.of_type("aws:s3/bucketCorsConfiguration:BucketCorsConfiguration")


def test_dev_bucket_is_emptied_on_destroy_versions_included(dev):
    bucket = dev.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is True
    assert not bucket.protect and not bucket.retain_on_delete


def test_prod_bucket_is_protected_and_retained(prod):
    bucket = prod.one(BUCKET)
    assert bucket.inputs["forceDestroy"] is False
    assert bucket.protect and bucket.retain_on_delete
    key = prod.one("aws:kms/key:Key", "clinic-prod-exams-key")
    assert key.protect and key.retain_on_delete, "a retained bucket needs its key"


def test_wildcard_origin_is_refused():
    with pytest.raises(ValueError, match=r"cors_allowed_origins entry '\*' is invalid"):
        evaluate(lambda: Storage("s", StorageArgs(noncurrent_version_days=7, cors_allowed_origins=["*"])), stack="dev")
