"""The whole program, evaluated for each committed stack file."""

import json

from tests.infra.pulumi_mocks import Graph, stack_config

DATA_SERVICES = {
    "aws:rds/instance:Instance": ("clinic:index:Database",),
    # Exam PDFs (and prod's replica), and the audit trail's log files.
    "aws:s3/bucket:Bucket": ("clinic:index:Storage", "clinic:index:AuditTrail"),
    "aws:sqs/queue:Queue": ("clinic:index:Messaging",),
    "aws:sesv2/emailIdentity:EmailIdentity": ("clinic:index:Email",),
}


def component_of(graph: Graph, urn: str) -> str:
    """The clinic component a resource belongs to (its nearest clinic:index:* ancestor)."""
    record = graph.by_urn[urn]
    while record.parent in graph.by_urn and not record.type.startswith("clinic:index:"):
        record = graph.by_urn[record.parent]
    return record.type


def test_both_stacks_evaluate_with_their_shape(dev, prod):
    assert len(dev.of_type("aws:ec2/subnet:Subnet")) == 6 and len(prod.of_type("aws:ec2/subnet:Subnet")) == 9
    for graph in (dev, prod):
        components = {r.type for r in graph.records if r.type.startswith("clinic:index:")}
        assert components >= {c for owners in DATA_SERVICES.values() for c in owners} | {"clinic:index:Network"}


def test_data_services_depend_on_nothing_but_their_component_and_the_network(stack):
    """RDS, S3, SQS and SES never wait on the cluster (so `pulumi up` creates them in parallel with it) and the
    cluster's teardown never waits on them."""
    for typ, owners in DATA_SERVICES.items():
        for resource in stack.of_type(typ):
            component = component_of(stack, resource.urn)
            assert component in owners, f"{resource.name} belongs to {component}"
            allowed = {component} | ({"clinic:index:Network"} if typ.startswith("aws:rds") else set())
            outside = {
                stack.by_urn[u].type for u in stack.dependencies_of(resource) if component_of(stack, u) not in allowed
            }
            assert not outside, f"{resource.name} depends on {sorted(outside)}"


def test_every_tagged_resource_carries_the_platform_tags(stack):
    environment = "prod" if stack.records[0].name.startswith("clinic-prod-") else "dev"
    tagged = [r for r in stack.records if r.custom and "tags" in r.inputs]
    assert len(tagged) > 30
    for resource in tagged:
        tags = resource.inputs["tags"]
        assert tags["project"] == "clinic-platform" and tags["environment"] == environment, resource.name
        assert tags["managed-by"] == "pulumi" and tags["owner"] == "platform-team", resource.name


def test_taggable_aws_resources_are_not_left_untagged(stack):
    taggable = (
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:rds/instance:Instance",
        "aws:s3/bucket:Bucket",
        "aws:sqs/queue:Queue",
        "aws:kms/key:Key",
        "aws:ec2/natGateway:NatGateway",
    )
    for typ in taggable:
        for resource in stack.of_type(typ):
            assert "tags" in resource.inputs, f"{resource.name} ({typ}) has no tags"


def test_no_export_carries_a_password_and_the_kubeconfig_is_a_secret(stack):
    text = json.dumps({k: v for k, (v, _) in stack.exports.items()}).lower()
    for word in ("password", "secretstring", "privatekey", 'token":'):
        assert word not in text
    secret = sorted(k for k, (_, is_secret) in stack.exports.items() if is_secret)
    assert secret == ["kubeconfig"], f"only the kubeconfig is a secret output, got {secret}"


def test_stack_exports_name_what_the_apps_need(stack):
    for key in (
        "vpcId",
        "databaseAddress",
        "databaseSecretArn",
        "examBucketName",
        "queueUrls",
        "deadLetterQueueUrls",
        "emailIdentityArn",
        "emailFromAddress",
        "emailConfigurationSet",
    ):
        assert key in stack.exports, key
    assert sorted(stack.exports["queueUrls"][0]) == ["account", "appointment", "exam", "exam-result", "file"]


def test_a_restored_instance_serves_the_apps_and_alarms_while_the_stacks_own_stays_protected():
    from tests.infra.pulumi_mocks import evaluate_program

    restored = "clinic-prod-db-pitr-202611241000"
    graph = evaluate_program(
        "prod",
        {
            "clinic-platform:database": {
                **json.loads(stack_config("prod")["clinic-platform:database"]),
                "restoredInstanceId": restored,
            }
        },
    )
    original = graph.one("aws:rds/instance:Instance")
    assert original.protect, "the stack's own instance is kept, protected, for comparison and forensics"

    api = next(
        d for d in graph.of_type("kubernetes:apps/v1:Deployment") if d.inputs["metadata"]["name"] == "clinic-api"
    )
    env = {e["name"]: e.get("value") for e in api.input("spec", "template", "spec", "containers")[0]["env"]}
    assert env["CLINIC_DATABASE__HOST"].startswith(restored + ".")
    assert env["CLINIC_DATABASE__SECRET_ARN"].endswith(f"secret:rds!db-{restored}")
    api_policy = next(
        p for p in graph.of_type("aws:iam/rolePolicy:RolePolicy") if "DatabaseSecret" in p.inputs["policy"]
    )
    assert f"rds!db-{restored}" in api_policy.inputs["policy"], "the app may read the restored instance's secret"

    watched = {
        a.inputs["dimensions"]["DBInstanceIdentifier"]
        for a in graph.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if "DBInstanceIdentifier" in (a.inputs.get("dimensions") or {})
    }
    assert watched == {restored}, f"RDS alarms watch {watched}"
    selection = graph.one("aws:backup/selection:Selection")
    assert len(selection.inputs["resources"]) == 2 and any(restored in arn for arn in selection.inputs["resources"])
    assert graph.exports["databaseInstanceId"][0] == restored
    assert graph.exports["stackDatabaseInstanceId"][0] == original.name, "the mocks name an instance after itself"


def test_without_a_restore_the_apps_and_alarms_use_the_stacks_own_instance(prod):
    original = prod.one("aws:rds/instance:Instance")
    watched = {
        a.inputs["dimensions"]["DBInstanceIdentifier"]
        for a in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
        if "DBInstanceIdentifier" in (a.inputs.get("dimensions") or {})
    }
    assert watched == {original.name}, watched
    assert prod.exports["databaseInstanceId"][0] == prod.exports["stackDatabaseInstanceId"][0]
    assert prod.exports["databaseAddress"][0].startswith(original.name)
