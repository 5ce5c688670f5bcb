"""The clinic's policy pack: each guardrail on passing and failing inputs, then the whole pack over the recorded
resources of both committed stacks."""

import json

import pytest

from policy import guardrails as g
from policy.guardrails import Resource

LT = "aws:ec2/launchTemplate:LaunchTemplate"
RDS = "aws:rds/instance:Instance"
EKS = "eks:index:Cluster"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
TLS_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
)


def rules(resource_type, props, environment="prod"):
    return sorted({name for name, _ in g.check_resource(resource_type, props, environment)})


def pod(container_context=None, pod_context=None, limits=None):
    container = {
        "name": "api",
        "image": "api:1",
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"} if limits is None else limits},
    }
    if container_context is not None:
        container["securityContext"] = container_context
    spec = {"containers": [container]}
    if pod_context is not None:
        spec["securityContext"] = pod_context
    return spec


ALB = "alb.ingress.kubernetes.io/"
HTTPS_ALB = {
    ALB + "scheme": "internet-facing",
    ALB + "certificate-arn": "arn:aws:acm:eu-west-1:1:certificate/x",
    ALB + "listen-ports": '[{"HTTP": 80}, {"HTTPS": 443}]',
    ALB + "ssl-redirect": "443",
    ALB + "ssl-policy": "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
}
PROD_RDS = {
    "storageEncrypted": True,
    "publiclyAccessible": False,
    "deletionProtection": True,
    "multiAz": True,
    "backupRetentionPeriod": 14,
}

# (resource type, compliant props, {change: rule it must break})
CASES = [
    (
        RDS,
        PROD_RDS,
        [
            ({"storageEncrypted": False}, "encryption-at-rest"),
            ({"publiclyAccessible": True}, "no-public-data"),
            ({"deletionProtection": False}, "prod-database-resilience"),
            ({"multiAz": False}, "prod-database-resilience"),
            ({"backupRetentionPeriod": 13}, "prod-database-resilience"),
        ],
    ),
    ("aws:sqs/queue:Queue", {"sqsManagedSseEnabled": True}, [({"sqsManagedSseEnabled": False}, "encryption-at-rest")]),
    ("aws:sqs/queue:Queue", {"kmsMasterKeyId": "alias/q"}, [({"kmsMasterKeyId": None}, "encryption-at-rest")]),
    (
        "aws:kms/key:Key",
        {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "s.amazonaws.com"}}]})},
        [
            ({"policy": None}, "kms-key-explicit-policy"),
            (
                {"policy": json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "kms:*"}]})},
                "kms-key-explicit-policy",
            ),
        ],
    ),
    (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        dict.fromkeys(g.PUBLIC_ACCESS_FLAGS, True) | {"bucket": "b"},
        [({flag: False}, "no-public-data") for flag in g.PUBLIC_ACCESS_FLAGS],
    ),
    (
        "aws:s3/bucketPolicy:BucketPolicy",
        {"bucket": "b", "policy": TLS_POLICY},
        [
            ({"policy": TLS_POLICY.replace('"Deny"', '"Allow"')}, "s3-tls-only"),
            ({"policy": TLS_POLICY.replace('"s3:*"', '"s3:GetObject"')}, "s3-tls-only"),
            ({"policy": json.dumps({"Statement": []})}, "s3-tls-only"),
        ],
    ),
    (
        g.SSE_CONFIG_TYPES[0],
        {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]},
        [({"rules": []}, "encryption-at-rest")],
    ),
    (
        EKS,
        {"encryptionConfigKeyArn": "arn:aws:kms:k", "enabledClusterLogTypes": ["api", "audit", "authenticator"]},
        [
            ({"encryptionConfigKeyArn": None}, "encryption-at-rest"),
            ({"enabledClusterLogTypes": ["api", "authenticator"]}, "eks-control-plane-logging"),
            ({"enabledClusterLogTypes": None}, "eks-control-plane-logging"),
        ],
    ),
    (
        "aws:eks/cluster:Cluster",
        {
            "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "k"}},
            "enabledClusterLogTypes": ["api", "audit", "authenticator", "scheduler"],
        },
        [({"encryptionConfig": {"resources": [], "provider": {"keyArn": "k"}}}, "encryption-at-rest")],
    ),
    (
        LT,
        {
            "metadataOptions": {"httpTokens": "required"},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}],
        },
        [
            ({"metadataOptions": {"httpTokens": "optional"}}, "imdsv2-required"),
            ({"metadataOptions": None}, "imdsv2-required"),
            (
                {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]},
                "encryption-at-rest",
            ),
        ],
    ),
    (
        "aws:eks/nodeGroup:NodeGroup",
        {"launchTemplate": {"id": "lt-1", "version": "1"}},
        [({"launchTemplate": None}, "imdsv2-required")],
    ),
    ("eks:index:ManagedNodeGroup", {"enableIMDSv2": True}, [({"enableIMDSv2": False}, "imdsv2-required")]),
    (
        g.LOG_GROUP_TYPE,
        {"kmsKeyId": "arn:aws:kms:k", "retentionInDays": 7.0},
        [
            ({"kmsKeyId": None}, "encryption-at-rest"),
            ({"retentionInDays": None}, "logs-expire"),
            ({"retentionInDays": 0}, "logs-expire"),
            ({"retentionInDays": 10}, "logs-expire"),  # CloudWatch accepts only limits.LOG_RETENTION_DAYS
        ],
    ),
    ("aws:backup/vault:Vault", {"kmsKeyArn": "arn:aws:kms:k"}, [({"kmsKeyArn": None}, "encryption-at-rest")]),
    (
        g.TRAIL_TYPE,
        {"kmsKeyId": "arn:aws:kms:k", "enableLogFileValidation": True, "isMultiRegionTrail": True},
        [
            ({"kmsKeyId": None}, "encryption-at-rest"),
            ({"enableLogFileValidation": False}, "audit-trail-integrity"),
            ({"enableLogFileValidation": None}, "audit-trail-integrity"),
            ({"isMultiRegionTrail": False}, "audit-trail-integrity"),
        ],
    ),
    (
        DEPLOYMENT,
        {"spec": {"template": {"spec": pod(pod_context={"runAsNonRoot": True})}}},
        [
            ({"spec": {"template": {"spec": pod()}}}, "pods-non-root-with-limits"),
            (
                {"spec": {"template": {"spec": pod({"runAsUser": 0}, {"runAsNonRoot": True})}}},
                "pods-non-root-with-limits",
            ),
            (
                {"spec": {"template": {"spec": pod({"runAsNonRoot": False}, {"runAsNonRoot": True})}}},
                "pods-non-root-with-limits",
            ),
            (
                {"spec": {"template": {"spec": pod(pod_context={"runAsNonRoot": True}, limits={"memory": "1Gi"})}}},
                "pods-non-root-with-limits",
            ),
            ({"spec": {"template": {"spec": {"containers": []}}}}, "pods-non-root-with-limits"),
        ],
    ),
    (
        "kubernetes:batch/v1:Job",
        {"spec": {"template": {"spec": pod({"runAsUser": 10001})}}},
        [
            ({"spec": {"template": {"spec": pod({"runAsUser": 10001}, limits={})}}}, "pods-non-root-with-limits"),
            (
                {"spec": {"template": {"spec": pod({"runAsUser": 0.0, "runAsNonRoot": True})}}},
                "pods-non-root-with-limits",
            ),
        ],
    ),
    # As recorded and as pulumi-policy passes them, numbers are floats.
    (
        "kubernetes:apps/v1:StatefulSet",
        {"spec": {"template": {"spec": pod(pod_context={"runAsUser": 10001.0})}}},
        [({"spec": {"template": {"spec": pod(pod_context={"runAsUser": True})}}}, "pods-non-root-with-limits")],
    ),
    (
        "kubernetes:batch/v1:CronJob",
        {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod({"runAsNonRoot": True})}}}}},
        [({"spec": {"jobTemplate": {"spec": {"template": {"spec": pod()}}}}}, "pods-non-root-with-limits")],
    ),
    (
        "kubernetes:networking.k8s.io/v1:Ingress",
        {"metadata": {"annotations": HTTPS_ALB}},
        [
            (
                {
                    "metadata": {
                        "annotations": {k: v for k, v in HTTPS_ALB.items() if not k.endswith("certificate-arn")}
                    }
                },
                "prod-https-only",
            ),
            ({"metadata": {"annotations": {**HTTPS_ALB, ALB + "listen-ports": '[{"HTTP": 80}]'}}}, "prod-https-only"),
            ({"metadata": {"annotations": {**HTTPS_ALB, ALB + "ssl-redirect": None}}}, "prod-https-only"),
            (
                {"metadata": {"annotations": {**HTTPS_ALB, ALB + "ssl-policy": "ELBSecurityPolicy-2016-08"}}},
                "prod-https-only",
            ),
        ],
    ),
]


@pytest.mark.parametrize("resource_type,good,bad", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_guardrail_passes_compliant_props_and_names_the_broken_rule(resource_type, good, bad):
    assert rules(resource_type, good) == [], g.check_resource(resource_type, good, "prod")
    for change, rule in bad:
        assert rules(resource_type, {**good, **change}) == [rule], (resource_type, change)


def test_every_rule_is_exercised_by_a_failing_case():
    broken = {rule for _, _, bad in CASES for _, rule in bad}
    assert broken == {r.name for r in g.RESOURCE_RULES}


def test_dev_and_internal_load_balancers_may_serve_http():
    http = {"metadata": {"annotations": {ALB + "scheme": "internet-facing", ALB + "listen-ports": '[{"HTTP": 80}]'}}}
    assert rules("kubernetes:networking.k8s.io/v1:Ingress", http, "dev") == []
    internal = {"metadata": {"annotations": {ALB + "scheme": "internal", ALB + "listen-ports": '[{"HTTP": 80}]'}}}
    assert rules("kubernetes:networking.k8s.io/v1:Ingress", internal, "prod") == []


def test_prod_only_database_rules_are_not_applied_to_dev():
    dev_db = {**PROD_RDS, "multiAz": False, "deletionProtection": False, "backupRetentionPeriod": 1}
    assert rules(RDS, dev_db, "dev") == []
    assert rules(RDS, {**dev_db, "storageEncrypted": False}, "dev") == ["encryption-at-rest"]


def test_messages_name_the_setting_to_fix():
    messages = [m for _, m in g.check_resource(RDS, {**PROD_RDS, "backupRetentionPeriod": 7}, "prod")]
    assert messages == ["backupRetentionPeriod = 7 must be at least 14 days in prod"]


# --- stack rules ---


def bucket_stack(*companions):
    bucket = Resource("urn:b", "aws:s3/bucket:Bucket", "exams", {"bucket": "exams-1"})
    return [
        bucket,
        *[Resource(f"urn:{t}", t, t, {"bucket": "?"}, {"bucket": frozenset({"urn:b"})}) for t in companions],
    ]


@pytest.mark.parametrize(
    "rule,companion",
    [
        (g.buckets_encrypted, g.SSE_CONFIG_TYPES[0]),
        (g.buckets_public_access_blocked, g.PUBLIC_ACCESS_BLOCK_TYPE),
        (g.buckets_tls_only, g.BUCKET_POLICY_TYPE),
    ],
)
def test_every_bucket_needs_its_companion_resource(rule, companion):
    assert rule(bucket_stack(companion), "prod") == []
    assert rule(bucket_stack(), "prod") == [(rule(bucket_stack(), "prod")[0][0], "urn:b")]
    # Another bucket's companion does not count.
    other = Resource("urn:c", companion, "c", {"bucket": "other"}, {"bucket": frozenset({"urn:other"})})
    assert len(rule([bucket_stack()[0], other], "prod")) == 1
    # Matched by value once ids are known (no property dependency recorded).
    by_value = Resource("urn:d", companion, "d", {"bucket": "exams-1"})
    assert rule([bucket_stack()[0], by_value], "prod") == []


def test_inline_bucket_encryption_and_policy_count():
    bucket = Resource(
        "urn:b",
        "aws:s3/bucket:Bucket",
        "b",
        {
            "serverSideEncryptionConfiguration": {
                "rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}
            },
            "policy": TLS_POLICY,
        },
    )
    assert g.buckets_encrypted([bucket], "prod") == [] and g.buckets_tls_only([bucket], "prod") == []


def test_queues_without_redrive_are_allowed_only_as_dead_letter_queues():
    dlq = Resource("urn:dlq", g.QUEUE_TYPE, "dlq", {"arn": "arn:dlq"})
    main = Resource(
        "urn:q",
        g.QUEUE_TYPE,
        "q",
        {"redrivePolicy": '{"deadLetterTargetArn": "?"}'},
        {"redrivePolicy": frozenset({"urn:dlq"})},
    )
    assert g.queues_have_dead_letter_queues([dlq, main], "prod") == []
    lonely = Resource("urn:l", g.QUEUE_TYPE, "lonely", {"arn": "arn:lonely"})
    assert g.queues_have_dead_letter_queues([dlq, main, lonely], "prod") == [
        ("queue lonely has no redrive policy to a dead-letter queue", "urn:l")
    ]
    # Once ARNs are known the target can be read from the JSON itself.
    by_arn = Resource(
        "urn:q2", g.QUEUE_TYPE, "q2", {"redrivePolicy": json.dumps({"deadLetterTargetArn": "arn:lonely"})}
    )
    assert g.queues_have_dead_letter_queues([lonely, by_arn], "prod") == []
    # A standalone RedrivePolicy resource gives its queue a redrive policy and marks its target as a DLQ.
    standalone = Resource(
        "urn:rp",
        g.REDRIVE_POLICY_TYPE,
        "rp",
        {"queueUrl": "?"},
        {"queueUrl": frozenset({"urn:l"}), "redrivePolicy": frozenset({"urn:dlq"})},
    )
    assert g.queues_have_dead_letter_queues([dlq, lonely, standalone], "prod") == []


# --- audit trail, replication, object-level logging ---

EXAMS = "arn:aws:s3:::exams-1"


def trail(*, bucket="urn:logs", arns=(EXAMS,), validation=True, data_selector=True):
    selectors = [{"name": "management", "fieldSelectors": [{"field": "eventCategory", "equals": ["Management"]}]}]
    if data_selector:
        selectors.append(
            {
                "fieldSelectors": [
                    {"field": "eventCategory", "equals": ["Data"]},
                    {"field": "resources.type", "equals": ["AWS::S3::Object"]},
                    {"field": "resources.ARN", "startsWiths": [f"{a}/" for a in arns]},
                ]
            }
        )
    return Resource(
        "urn:trail",
        g.TRAIL_TYPE,
        "trail",
        {"s3BucketName": "?", "enableLogFileValidation": validation, "advancedEventSelectors": selectors},
        {"s3BucketName": frozenset({bucket})},
    )


def patient_stack(*, replicated=True, logged=True, locked=True):
    """Exam bucket, its replica and the trail's log bucket, as the program builds prod."""
    exams = Resource("urn:exams", "aws:s3/bucket:Bucket", "exams", {"bucket": "exams-1", "arn": EXAMS})
    replica = Resource(
        "urn:replica", "aws:s3/bucket:Bucket", "replica", {"bucket": "replica-1", "arn": "arn:aws:s3:::replica-1"}
    )
    logs = Resource(
        "urn:logs",
        "aws:s3/bucket:Bucket",
        "logs",
        {"bucket": "logs-1", "arn": "arn:aws:s3:::logs-1", "objectLockEnabled": locked},
    )
    resources = [
        exams,
        replica,
        logs,
        trail(arns=(EXAMS, "arn:aws:s3:::replica-1") if logged else ("arn:aws:s3:::replica-1",)),
    ]
    if replicated:
        resources.append(
            Resource(
                "urn:replication",
                g.REPLICATION_TYPE,
                "replication",
                {"bucket": "exams-1", "rules": [{"destination": {"bucket": "arn:aws:s3:::replica-1"}}]},
            )
        )
    return resources


AUDIT_RULES = ("audit-trail", "prod-patient-data-replicated-and-logged")


def stack_findings(resources, environment="prod"):
    """What the audit and replication rules say (the sketch leaves out the encryption and access blocks)."""
    return sorted(
        (rule.name, urn)
        for rule in g.STACK_RULES
        if rule.name in AUDIT_RULES
        for _, urn in rule.check(resources, environment)
    )


def test_prod_patient_buckets_must_be_logged_and_replicated_and_log_buckets_are_exempt():
    assert stack_findings(patient_stack()) == []
    assert stack_findings(patient_stack(replicated=False)) == [
        ("prod-patient-data-replicated-and-logged", "urn:exams"),
        # Without the configuration nothing marks the replica as one: it would need its own copy.
        ("prod-patient-data-replicated-and-logged", "urn:replica"),
    ]
    assert stack_findings(patient_stack(logged=False)) == [("prod-patient-data-replicated-and-logged", "urn:exams")]
    assert stack_findings(patient_stack(replicated=False), "dev") == []


def test_object_logging_counts_from_s3_access_logs_a_bucket_wide_selector_or_a_preview_dependency():
    resources = patient_stack(logged=False)
    access_logging = Resource(
        "urn:al", g.ACCESS_LOGGING_TYPES[0], "al", {"bucket": "exams-1", "targetBucket": "logs-1"}
    )
    assert stack_findings([*resources, access_logging]) == []
    every_bucket = trail(data_selector=True)
    every_bucket.props["advancedEventSelectors"][1]["fieldSelectors"].pop()  # no resources.ARN: every object
    assert stack_findings([r for r in resources if r.type != g.TRAIL_TYPE] + [every_bucket]) == []
    # A preview: the bucket's ARN is unknown, but the trail's selectors are built from it.
    unknown = [
        Resource(r.urn, r.type, r.name, {k: v for k, v in r.props.items() if k != "arn"}) if r.urn == "urn:exams" else r
        for r in patient_stack()
    ]
    previewed = trail(arns=("<unknown>",))
    previewed = Resource(
        previewed.urn,
        previewed.type,
        previewed.name,
        previewed.props,
        {**previewed.property_dependencies, "advancedEventSelectors": frozenset({"urn:exams"})},
    )
    assert stack_findings([r for r in unknown if r.type != g.TRAIL_TYPE] + [previewed]) == [
        ("prod-patient-data-replicated-and-logged", "urn:replica")  # its ARN is no longer in the selectors
    ]


def test_a_stack_needs_a_validated_trail_and_prod_locks_its_bucket():
    no_trail = [r for r in patient_stack() if r.type != g.TRAIL_TYPE]
    assert ("audit-trail", "") in stack_findings(no_trail)
    assert ("audit-trail", "") in stack_findings(no_trail, "dev")
    unvalidated = [r for r in patient_stack() if r.type != g.TRAIL_TYPE] + [
        trail(arns=(EXAMS, "arn:aws:s3:::replica-1"), validation=False)
    ]
    assert ("audit-trail", "") in stack_findings(unvalidated)
    assert stack_findings(patient_stack(locked=False)) == [("audit-trail", "urn:logs")]
    assert stack_findings(patient_stack(locked=False), "dev") == []


def test_prods_recorded_graph_breaks_the_rules_without_its_replication_or_its_trail(prod):
    _, outputs = stack_resources(prod)
    without_replication = [r for r in outputs if r.type != g.REPLICATION_TYPE]
    assert {(v.rule, v.urn.rsplit("::", 1)[1]) for v in g.check_stack(without_replication, environment="prod")} == {
        ("prod-patient-data-replicated-and-logged", "clinic-prod-exams-bucket"),
        ("prod-patient-data-replicated-and-logged", "clinic-prod-exams-replica"),
    }
    without_trail = [r for r in outputs if r.type != g.TRAIL_TYPE]
    assert {(v.rule, v.urn.rsplit("::", 1)[-1]) for v in g.check_stack(without_trail, environment="prod")} == {
        ("audit-trail", ""),
        ("prod-patient-data-replicated-and-logged", "clinic-prod-exams-bucket"),
        ("prod-patient-data-replicated-and-logged", "clinic-prod-exams-replica"),
        # Without the trail nothing marks the log bucket as one.
        ("prod-patient-data-replicated-and-logged", "clinic-prod-audit-logs"),
    }


# --- enforcement ---


@pytest.mark.parametrize(
    "env,expected",
    [
        (
            {"PULUMI_STACK": "dev", "PULUMI_CONFIG": json.dumps({"clinic-platform:environment": "dev"})},
            ("dev", "advisory"),
        ),
        (
            {"PULUMI_STACK": "prod", "PULUMI_CONFIG": json.dumps({"clinic-platform:environment": "prod"})},
            ("prod", "mandatory"),
        ),
        # The config wins over the name: a stack called "dev" configured as prod is held to prod.
        (
            {"PULUMI_STACK": "dev", "PULUMI_CONFIG": json.dumps({"clinic-platform:environment": "prod"})},
            ("prod", "mandatory"),
        ),
        ({"PULUMI_STACK": "acme/clinic-platform/dev"}, ("dev", "advisory")),
        ({"PULUMI_STACK": "staging"}, ("prod", "mandatory")),
        ({}, ("prod", "mandatory")),
        ({"PULUMI_STACK": "dev", "PULUMI_CONFIG": "not json"}, ("dev", "advisory")),
    ],
)
def test_enforcement_is_advisory_only_on_dev_and_fails_closed(env, expected):
    _, environment = g.stack_environment(env)
    assert (g.effective_environment(environment), g.enforcement_level(environment)) == expected


# --- the whole pack over both committed stacks ---


def stack_resources(graph):
    """The recorded graph as the pack sees it: inputs for resource rules, provider outputs for stack rules."""

    def resource(r, props):
        return Resource(r.urn, r.type, r.name, props, {k: frozenset(v) for k, v in r.property_dependencies.items()})

    custom = [r for r in graph.records if r.custom or r.remote]
    return [resource(r, r.inputs) for r in custom], [resource(r, r.state) for r in custom]


def test_prod_has_no_violations(prod):
    inputs, outputs = stack_resources(prod)
    violations = g.check_stack(inputs, outputs, "prod")
    assert violations == [], "\n".join(f"{v.rule}: {v.urn.rsplit('::', 1)[1]}: {v.message}" for v in violations)


def test_dev_breaks_only_the_prod_only_rules_when_held_to_prod(dev):
    inputs, outputs = stack_resources(dev)
    assert g.check_stack(inputs, outputs, "dev") == []
    held_to_prod = g.check_stack(inputs, outputs, "prod")
    assert {(v.rule, v.urn.rsplit("::", 1)[1]) for v in held_to_prod} == {
        ("prod-database-resilience", "clinic-dev-db-postgres"),
        ("prod-https-only", "clinic-dev-apps-ingress"),
        # Dev keeps no replica (cost, teardown) and its audit log bucket is not locked (it is emptied on destroy).
        ("prod-patient-data-replicated-and-logged", "clinic-dev-exams-bucket"),
        ("audit-trail", "clinic-dev-audit-logs"),
    }


def test_the_pack_sees_every_kind_of_resource_it_guards_in_prod(prod):
    """Guards against a rule silently matching nothing because a type token changed."""
    present = {r.type for r in prod.records}
    for typ in (
        RDS,
        EKS,
        LT,
        "aws:eks/nodeGroup:NodeGroup",
        "aws:sqs/queue:Queue",
        g.PUBLIC_ACCESS_BLOCK_TYPE,
        g.BUCKET_POLICY_TYPE,
        g.SSE_CONFIG_TYPES[0],
        "aws:s3/bucket:Bucket",
        g.LOG_GROUP_TYPE,
        "aws:backup/vault:Vault",
        "aws:sns/topic:Topic",
        g.TRAIL_TYPE,
        g.REPLICATION_TYPE,
        "aws:kms/key:Key",
    ):
        assert typ in present, typ


def test_a_violation_in_the_program_is_caught(prod):
    """The same run, with the exam bucket's public access block removed and the cluster's audit log dropped."""
    inputs, outputs = stack_resources(prod)
    inputs = [
        r
        if r.type != EKS
        else Resource(r.urn, r.type, r.name, {**r.props, "enabledClusterLogTypes": ["api"]}, r.property_dependencies)
        for r in inputs
    ]
    outputs = [r for r in outputs if r.name != "clinic-prod-exams-public-access-block"]
    assert sorted(v.rule for v in g.check_stack(inputs, outputs, "prod")) == [
        "eks-control-plane-logging",
        "s3-bucket-public-access-blocked",
    ]


# --- keys and queues ---

KMS_KEY = "aws:kms/key:Key"
ACCOUNT_ROOT = {"AWS": "arn:aws:iam::123456789012:root"}
ADMIN = {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": ACCOUNT_ROOT, "Action": ["kms:PutKeyPolicy"]}


def key_policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": [ADMIN, *statements]})


@pytest.mark.parametrize(
    ("props", "problem"),
    [
        ({}, "policy must be set"),
        ({"policy": key_policy()}, None),
        # The default policy's gap: the account may use the key, so any principal with IAM kms:* may.
        (
            {"policy": key_policy({"Sid": "Root", "Effect": "Allow", "Principal": ACCOUNT_ROOT, "Action": "kms:*"})},
            "Root",
        ),
        (
            {"policy": key_policy({"Sid": "Any", "Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt"})},
            "Any lets the whole account use the key",
        ),
        (
            {"policy": key_policy({"Sid": "G", "Effect": "Allow", "Principal": ACCOUNT_ROOT, "Action": "kms:Create*"})},
            "kms:Create*",
        ),
        (
            {
                "policy": key_policy(
                    {
                        "Sid": "Api",
                        "Effect": "Allow",
                        "Principal": ACCOUNT_ROOT,
                        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                        "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/api-*"}},
                    },
                    {
                        "Sid": "Logs",
                        "Effect": "Allow",
                        "Principal": {"Service": "logs.eu-west-1.amazonaws.com"},
                        "Action": "kms:Encrypt*",
                    },
                )
            },
            None,
        ),
    ],
)
def test_every_key_has_an_explicit_policy_naming_who_uses_it(props, problem):
    messages = [m for _, m in g.check_resource(KMS_KEY, props, "prod")]
    if problem is None:
        assert messages == []
    else:
        assert any(problem in m for m in messages), messages


def queue_graph(**queue_props):
    key = Resource("urn:key", KMS_KEY, "key", {"arn": "arn:aws:kms:eu-west-1:1:key/k"})
    queue = Resource("urn:q", "aws:sqs/queue:Queue", "q", queue_props)
    return [key, queue]


def test_queues_must_be_on_a_customer_managed_key():
    rule = g.queues_on_customer_keys
    assert rule(queue_graph(kmsMasterKeyId="arn:aws:kms:eu-west-1:1:key/k"), "prod") == []
    # During a first preview the key's ARN is unknown: the property dependency says which key it is.
    pending = queue_graph()
    pending[1] = Resource("urn:q", "aws:sqs/queue:Queue", "q", {}, {"kmsMasterKeyId": frozenset({"urn:key"})})
    assert rule(pending, "prod") == []
    assert rule(queue_graph(sqsManagedSseEnabled=True), "prod") == [
        ("queue q uses an SQS-owned key (SSE-SQS)", "urn:q")
    ]
    assert rule(queue_graph(kmsMasterKeyId="alias/aws/sqs"), "prod") == [
        ("queue q uses an SQS-owned key (alias/aws/sqs)", "urn:q")
    ]
    assert rule(queue_graph(), "prod") == [("queue q is not encrypted with a customer-managed KMS key", "urn:q")]


def test_a_key_without_policy_or_a_queue_back_on_sse_sqs_is_caught_in_the_program(prod):
    inputs, outputs = stack_resources(prod)
    first_key = next(r for r in inputs if r.type == KMS_KEY)
    first_queue = next(r for r in outputs if r.type == "aws:sqs/queue:Queue")

    def without(r, key):
        return Resource(r.urn, r.type, r.name, {k: v for k, v in r.props.items() if k != key}, {})

    inputs = [without(r, "policy") if r is first_key else r for r in inputs]
    outputs = [
        Resource(r.urn, r.type, r.name, {**without(r, "kmsMasterKeyId").props, "sqsManagedSseEnabled": True}, {})
        if r is first_queue
        else r
        for r in outputs
    ]
    assert sorted(v.rule for v in g.check_stack(inputs, outputs, "prod")) == [
        "kms-key-explicit-policy",
        "sqs-customer-managed-key",
    ]


def test_pod_rules_read_workloads_as_the_kubernetes_sdk_registers_them():
    """snake_case arguments of pulumi_kubernetes reach the engine (and the pack) camelCased, numbers as floats."""
    import pulumi_kubernetes as k8s

    from preview.graph import evaluate

    def deployment(name, security_context, limits):
        k8s.apps.v1.Deployment(
            name,
            spec={
                "selector": {"match_labels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "security_context": security_context,
                        "containers": [{"name": name, "image": f"{name}:1", "resources": {"limits": limits}}],
                    },
                },
            },
        )

    def build():
        deployment("ok", {"run_as_non_root": True, "run_as_user": 10001}, {"cpu": "500m", "memory": "256Mi"})
        deployment("root", {"run_as_user": 0}, {"cpu": "500m", "memory": "256Mi"})
        deployment("unbounded", {"run_as_user": 10001}, {"memory": "256Mi"})

    graph = evaluate(build, stack="prod")
    found = {r.name: [m for _, m in g.check_resource(r.type, r.inputs, "prod")] for r in graph.records}
    assert found == {
        "ok": [],
        "root": ["container root: must run as non-root (runAsNonRoot=true or runAsUser > 0)"],
        "unbounded": ["container unbounded: resources.limits must set cpu"],
    }


def test_the_pack_project_file_uses_only_keys_the_cli_knows_and_its_own_venv():
    import yaml

    from preview.graph import ROOT

    project = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    # The CLI's PolicyPackProject fields (a policy pack takes its name from PolicyPack(name=...), not from here).
    assert set(project) <= {"runtime", "version", "main", "description", "author", "website", "license"}
    assert project["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    requirements = (ROOT / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy" in requirements
    main = (ROOT / "policy" / "__main__.py").read_text()
    assert (
        'name="clinic-guardrails"' in main and "guardrails.RESOURCE_RULES" in main and "guardrails.STACK_RULES" in main
    )


def test_the_pack_imports_the_shared_limits_when_started_from_its_own_directory(tmp_path):
    """The CLI starts policy/__main__.py with the pack's venv, which has neither this project nor pydantic on its path.
    A stand-in pulumi_policy (the real one is kept out of this venv) records the pack it is given."""
    import subprocess
    import sys

    from preview.graph import ROOT

    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "pulumi_policy.py").write_text(
        "import json, os\n"
        "class EnforcementLevel: MANDATORY, ADVISORY = 'mandatory', 'advisory'\n"
        "class _Policy:\n"
        "    def __init__(self, name, description, validate, **kw): self.name = name\n"
        "ResourceValidationPolicy = StackValidationPolicy = _Policy\n"
        "def PolicyPack(name, enforcement_level, policies):\n"
        "    print(json.dumps({'name': name, 'level': enforcement_level, 'policies': len(policies)}))\n"
    )
    script = (
        "import runpy, sys; sys.path[:] = [p for p in sys.path if p not in ('', " + repr(str(ROOT)) + ")]; "
        "sys.path.insert(0, " + repr(str(stub)) + "); runpy.run_path('__main__.py', run_name='__main__'); "
        "import guardrails, limits; print(guardrails.MIN_PROD_BACKUP_DAYS is limits.MIN_PROD_BACKUP_DAYS, "
        "limits.__file__)"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PULUMI_STACK": "prod",
        "PULUMI_CONFIG": json.dumps({"clinic-platform:environment": "prod"}),
    }
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], cwd=ROOT / "policy", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    pack, shared = done.stdout.splitlines()
    assert json.loads(pack) == {
        "name": "clinic-guardrails",
        "level": "mandatory",
        "policies": len(g.RESOURCE_RULES) + len(g.STACK_RULES),
    }
    assert shared == f"True {ROOT / 'limits' / '__init__.py'}"
