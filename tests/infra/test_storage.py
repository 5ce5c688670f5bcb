"""Storage: the exam bucket is private, TLS-only, KMS-encrypted and versioned; prod keeps it, dev empties it."""

import pytest

from components.storage import Storage, StorageArgs
from tests.infra.pulumi_mocks import ACCOUNT_ID, evaluate

BUCKET = "aws:s3/bucket:Bucket"


def exam_bucket(graph):
    (bucket,) = [b for b in graph.of_type(BUCKET) if b.name.endswith("-exams-bucket")]
    return bucket


def bucket_child(graph, typ):
    found = [r for r in graph.of_type(typ) if r.parent == exam_bucket(graph).urn]
    assert len(found) == 1, f"expected one {typ} on the exam bucket"
    assert found[0].inputs["bucket"] == exam_bucket(graph).state["bucket"], f"{typ} must target the exam bucket"
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
    # The exam key itself, not the replica's (registration order is not the program's order: a key whose policy is
    # an Output registers once the policy resolves).
    key = next(k for k in stack.of_type("aws:kms/key:Key") if k.name.endswith("-exams-key"))
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key.state["arn"]}
    assert rule["bucketKeyEnabled"] is True


def test_bucket_policy_denies_plain_http_old_tls_and_other_encryption(stack):
    policy = bucket_child(stack, "aws:s3/bucketPolicy:BucketPolicy")
    statements = {s["Sid"]: s for s in policy.input("policy", "Statement")}
    insecure = statements["DenyInsecureTransport"]
    assert insecure["Effect"] == "Deny" and insecure["Principal"] == "*" and insecure["Action"] == "s3:*"
    assert insecure["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    bucket_arn = exam_bucket(stack).state["arn"]
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
    bucket = exam_bucket(dev)
    assert bucket.inputs["forceDestroy"] is True
    assert not bucket.protect and not bucket.retain_on_delete


def test_prod_bucket_is_protected_and_retained(prod):
    bucket = exam_bucket(prod)
    assert bucket.inputs["forceDestroy"] is False
    assert bucket.protect and bucket.retain_on_delete
    key = prod.one("aws:kms/key:Key", "clinic-prod-exams-key")
    assert key.protect and key.retain_on_delete, "a retained bucket needs its key"


def test_wildcard_origin_is_refused():
    with pytest.raises(ValueError, match=r"cors_allowed_origins entry '\*' is invalid"):
        evaluate(lambda: Storage("s", StorageArgs(noncurrent_version_days=7, cors_allowed_origins=["*"])), stack="dev")


# --- prod's replica in the second region ---

REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"


def test_dev_has_no_replica(dev):
    assert not dev.of_type(REPLICATION)
    assert [b.name for b in dev.of_type(BUCKET) if "exams" in b.name] == ["clinic-dev-exams-bucket"]


def test_prod_replicates_every_new_pdf_to_eu_central_1_under_that_regions_key_within_15_minutes(prod):
    source, replica = prod.one(BUCKET, "clinic-prod-exams-bucket"), prod.one(BUCKET, "clinic-prod-exams-replica")
    provider = prod.by_urn[replica.provider]
    assert provider.inputs["region"] == "eu-central-1", "the replica must live in backup.copyRegion"
    key = prod.one("aws:kms/key:Key", "clinic-prod-exams-replica-key")
    assert key.provider == replica.provider and ":eu-central-1:" in key.state["arn"], "a key of the replica's region"
    config = prod.one(REPLICATION)
    assert config.inputs["bucket"] == source.state["bucket"]
    (rule,) = config.inputs["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": ""}
    assert rule["sourceSelectionCriteria"] == {"sseKmsEncryptedObjects": {"status": "Enabled"}}, (
        "S3 skips SSE-KMS objects unless told: no PDF would be replicated"
    )
    assert rule["deleteMarkerReplication"] == {"status": "Disabled"}, "a deletion in the source must not hide the copy"
    destination = rule["destination"]
    assert destination["bucket"] == replica.state["arn"]
    assert destination["encryptionConfiguration"] == {"replicaKmsKeyId": key.state["arn"]}
    assert destination["replicationTime"] == {"status": "Enabled", "time": {"minutes": 15}}
    assert destination["metrics"] == {"status": "Enabled", "eventThreshold": {"minutes": 15}}
    role = prod.one("aws:iam/role:Role", "clinic-prod-exams-replication-role")
    assert config.inputs["role"] == role.state["arn"]
    assert role.input("assumeRolePolicy", "Statement")[0]["Principal"] == {"Service": "s3.amazonaws.com"}


def test_replication_waits_for_versioning_on_both_buckets_and_the_roles_permissions(prod):
    config = prod.one(REPLICATION)
    for name in ("clinic-prod-exams-versioning", "clinic-prod-exams-replica-versioning"):
        versioning = prod.one("aws:s3/bucketVersioning:BucketVersioning", name)
        assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
        assert versioning.urn in config.dependencies, f"S3 refuses replication before {name}"
    policy = prod.one("aws:iam/rolePolicy:RolePolicy", "clinic-prod-exams-replication-policy")
    assert policy.urn in config.dependencies


def test_the_replication_role_may_do_exactly_what_replication_needs(prod):
    source, replica = prod.one(BUCKET, "clinic-prod-exams-bucket"), prod.one(BUCKET, "clinic-prod-exams-replica")
    source_key = prod.one("aws:kms/key:Key", "clinic-prod-exams-key")
    replica_key = prod.one("aws:kms/key:Key", "clinic-prod-exams-replica-key")
    statements = {
        s["Sid"]: s
        for s in prod.one("aws:iam/rolePolicy:RolePolicy", "clinic-prod-exams-replication-policy").input(
            "policy", "Statement"
        )
    }
    granted = {
        (action, s["Resource"])
        for s in statements.values()
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    src, dst = source.state["arn"], replica.state["arn"]
    assert granted == {
        ("s3:GetReplicationConfiguration", src),
        ("s3:ListBucket", src),
        ("s3:GetObjectVersionForReplication", f"{src}/*"),
        ("s3:GetObjectVersionAcl", f"{src}/*"),
        ("s3:GetObjectVersionTagging", f"{src}/*"),
        ("s3:ReplicateObject", f"{dst}/*"),
        ("s3:ReplicateTags", f"{dst}/*"),
        ("kms:Decrypt", source_key.state["arn"]),
        ("kms:Encrypt", replica_key.state["arn"]),
        ("kms:GenerateDataKey", replica_key.state["arn"]),
    }, "no ReplicateDelete: delete markers are not replicated"
    decrypt, encrypt = statements["DecryptSource"]["Condition"], statements["EncryptReplicas"]["Condition"]
    assert decrypt["StringEquals"] == {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    assert decrypt["StringLike"] == {"kms:EncryptionContext:aws:s3:arn": [src, f"{src}/*"]}
    assert encrypt["StringEquals"] == {"kms:ViaService": "s3.eu-central-1.amazonaws.com"}
    assert encrypt["StringLike"] == {"kms:EncryptionContext:aws:s3:arn": [dst, f"{dst}/*"]}


def test_the_replica_key_is_used_only_by_the_replication_role_and_operators_through_s3_in_its_region(prod):
    key = prod.one("aws:kms/key:Key", "clinic-prod-exams-replica-key")
    role = prod.one("aws:iam/role:Role", "clinic-prod-exams-replication-role")
    statements = {s["Sid"]: s for s in key.input("policy", "Statement")}
    via_s3 = {"kms:CallerAccount": ACCOUNT_ID, "kms:ViaService": "s3.eu-central-1.amazonaws.com"}
    encrypt = statements["ReplicationEncryptsReplicas"]
    assert encrypt["Condition"] == {"ArnLike": {"aws:PrincipalArn": [role.state["arn"]]}, "StringEquals": via_s3}
    assert encrypt["Action"] == ["kms:Encrypt", "kms:GenerateDataKey"]
    assert not {"kms:*", "kms:Decrypt", "kms:CreateGrant"} & set(statements["AccountAdministers"]["Action"])
    # The committed prod stack names no operator role (cluster.adminRoleArns): nobody else may use the key.
    assert set(statements) == {"AccountAdministers", "ReplicationEncryptsReplicas"}
    # Named by a condition, not as the principal: the role's policy names the key, so the key cannot wait for it.
    assert not prod.depends_on(key, role), "the key and the role's policy would wait for each other"


def test_operators_may_decrypt_the_replica_to_restore_pdfs():
    operator = f"arn:aws:iam::{ACCOUNT_ID}:role/platform-admin"
    args = StorageArgs(
        noncurrent_version_days=7,
        region="eu-west-1",
        replica_region="eu-central-1",
        replica_reader_role_arns=[operator],
    )
    graph = evaluate(lambda: Storage("s", args), stack="prod")
    statements = {s["Sid"]: s for s in graph.one("aws:kms/key:Key", "s-replica-key").input("policy", "Statement")}
    assert statements["OperatorsReadReplicas"]["Action"] == ["kms:Decrypt", "kms:DescribeKey"]
    assert statements["OperatorsReadReplicas"]["Condition"] == {
        "ArnLike": {"aws:PrincipalArn": [operator]},
        "StringEquals": {"kms:CallerAccount": ACCOUNT_ID, "kms:ViaService": "s3.eu-central-1.amazonaws.com"},
    }


def test_the_replica_is_private_tls_only_encrypted_and_kept_like_the_source(prod):
    replica = prod.one(BUCKET, "clinic-prod-exams-replica")
    assert replica.protect and replica.retain_on_delete and replica.inputs["forceDestroy"] is False
    key = prod.one("aws:kms/key:Key", "clinic-prod-exams-replica-key")
    assert key.protect and key.retain_on_delete and key.inputs["enableKeyRotation"] is True

    def child(typ):
        (found,) = [r for r in prod.of_type(typ) if r.parent == replica.urn]
        assert found.inputs["bucket"] == replica.state["bucket"] and found.provider == replica.provider, found.name
        return found

    block = child("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(
        block.inputs[f] is True
        for f in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    )
    assert child("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"]["objectOwnership"] == (
        "BucketOwnerEnforced"
    )
    (rule,) = child("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration").inputs[
        "rules"
    ]
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"] == key.state["arn"]
    statements = {s["Sid"]: s for s in child("aws:s3/bucketPolicy:BucketPolicy").input("policy", "Statement")}
    assert statements["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (lifecycle,) = child("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    assert lifecycle["noncurrentVersionExpiration"]["noncurrentDays"] == 365


@pytest.mark.parametrize(
    "region,replica_region,expected",
    [
        (None, "eu-central-1", r"region = None is invalid with a replica_region"),
        ("eu-west-1", "eu-west-1", r"replica_region = 'eu-west-1' is invalid; allowed: an AWS region other than"),
        ("eu-west-1", "Frankfurt", r"replica_region = 'Frankfurt' is invalid"),
    ],
)
def test_a_replica_region_that_cannot_hold_a_copy_is_refused(region, replica_region, expected):
    args = StorageArgs(noncurrent_version_days=7, region=region, replica_region=replica_region)
    with pytest.raises(ValueError, match=expected):
        evaluate(lambda: Storage("s", args), stack="dev")


def test_a_name_too_long_for_the_replication_role_is_refused_before_anything_is_registered():
    args = StorageArgs(noncurrent_version_days=7, region="eu-west-1", replica_region="eu-central-1")
    with pytest.raises(ValueError, match=r"exceed IAM's 64 characters; allowed: a name of at most 52"):
        evaluate(lambda: Storage("s" * 53, args), stack="prod")
    assert (
        evaluate(lambda: Storage("s" * 52, args), stack="prod")
        .one("aws:iam/role:Role", f"{'s' * 52}-replication-role")
        .inputs["name"]
        == f"{'s' * 52}-replication"
    )


def test_the_exam_key_lets_the_replication_role_decrypt_through_s3(prod):
    """S3 decrypts each source PDF as the replication role: the exam key's policy must allow that role, through S3 in
    the source region, or every object fails to replicate (FAILED replication status, no error at `pulumi up`). Without
    a policy of its own the key's default policy defers to IAM, which grants it (test above)."""
    import fnmatch

    key = prod.one("aws:kms/key:Key", "clinic-prod-exams-key")
    role_arn = prod.one("aws:iam/role:Role", "clinic-prod-exams-replication-role").state["arn"]
    policy = key.input("policy")
    if policy is None:
        return

    def allows(statement):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        condition = statement.get("Condition", {})
        principals = [
            *condition.get("ArnLike", {}).get("aws:PrincipalArn", []),
            *condition.get("ArnEquals", {}).get("aws:PrincipalArn", []),
        ] or [statement["Principal"].get("AWS", "")]
        via = condition.get("StringEquals", {}).get("kms:ViaService", "s3.eu-west-1.amazonaws.com")
        return (
            statement["Effect"] == "Allow"
            and any(fnmatch.fnmatch("kms:Decrypt", a) for a in actions)
            and any(fnmatch.fnmatch(role_arn, p) or p == role_arn for p in principals)
            and "s3.eu-west-1.amazonaws.com" in (via if isinstance(via, list) else [via])
        )

    assert any(allows(s) for s in policy["Statement"]), f"{key.name}'s policy does not let {role_arn} decrypt via S3"
