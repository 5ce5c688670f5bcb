"""Database: private, encrypted, TLS-only, password kept by RDS; prod protected and retained, dev destroyable."""

import json

import pytest

from components.database import Database, DatabaseArgs
from tests.infra.pulumi_mocks import evaluate

RDS = "aws:rds/instance:Instance"


def test_rds_is_private_encrypted_with_its_own_key_and_has_no_password_anywhere(stack):
    db = stack.one(RDS)
    key = stack.one("aws:kms/key:Key", db.name.replace("-postgres", "-key"))
    assert db.inputs["publiclyAccessible"] is False
    assert db.inputs["storageEncrypted"] is True and db.inputs["kmsKeyId"] == key.state["arn"]
    assert db.inputs["manageMasterUserPassword"] is True
    assert db.inputs["masterUserSecretKmsKeyId"] == key.state["arn"]
    assert "password" not in db.inputs and "passwordWo" not in db.inputs
    assert key.inputs["enableKeyRotation"] is True
    assert db.inputs["engine"] == "postgres" and db.inputs["engineVersion"] == "16"
    assert db.inputs["iamDatabaseAuthenticationEnabled"] is True


def test_rds_lives_in_the_isolated_database_subnets(stack):
    group = stack.one("aws:rds/subnetGroup:SubnetGroup")
    database_subnets = sorted(f"{s.name}-id" for s in stack.of_type("aws:ec2/subnet:Subnet") if "-database-" in s.name)
    assert sorted(group.inputs["subnetIds"]) == database_subnets
    assert stack.one(RDS).inputs["dbSubnetGroupName"] == group.state["name"]


def test_parameter_group_forces_tls(stack):
    params = stack.one("aws:rds/parameterGroup:ParameterGroup")
    assert {"name": "rds.force_ssl", "value": "1"} in [
        {"name": p["name"], "value": p["value"]} for p in params.inputs["parameters"]
    ]
    assert params.inputs["family"] == "postgres16"
    assert stack.one(RDS).inputs["parameterGroupName"] == params.state["name"]


def test_parameter_group_lets_the_migrations_create_btree_gist(stack):
    """Migration 0003 runs CREATE EXTENSION btree_gist (the appointments' no-overlap constraint) as the database's
    owner, not rds_superuser: RDS lets a user with CREATE on the database install it (a trusted extension on RDS
    PostgreSQL 13+, per the RDS user guide) unless rds.allowed_extensions leaves it out."""
    params = {p["name"]: p["value"] for p in stack.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]}
    allowed = params.get("rds.allowed_extensions", "*")
    assert allowed == "*" or "btree_gist" in allowed.split(",")
    assert int(stack.one(RDS).inputs["engineVersion"]) >= 13


def test_prod_rds_has_deletion_protection_multi_az_final_snapshot_and_protect(prod):
    db = prod.one(RDS)
    assert db.inputs["deletionProtection"] is True
    assert db.inputs["multiAz"] is True
    assert db.inputs["skipFinalSnapshot"] is False and db.inputs["finalSnapshotIdentifier"] == "clinic-prod-db-final"
    assert db.inputs["deleteAutomatedBackups"] is False
    assert db.inputs["backupRetentionPeriod"] == 35
    assert db.inputs["performanceInsightsEnabled"] is True
    assert db.inputs["performanceInsightsKmsKeyId"].startswith("arn:aws:kms:")
    assert db.protect, "prod RDS must be protected from any Pulumi delete"
    assert prod.one("aws:kms/key:Key", "clinic-prod-db-key").protect, "losing the key loses the data"


def test_prod_rds_has_enhanced_monitoring_every_minute_with_a_role_only_rds_monitoring_assumes(prod):
    db = prod.one(RDS)
    role = prod.one("aws:iam/role:Role", "clinic-prod-db-monitoring-role")
    assert db.inputs["monitoringInterval"] == 60
    assert db.inputs["monitoringRoleArn"] == role.state["arn"]
    assert role.input("assumeRolePolicy", "Statement") == [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "monitoring.rds.amazonaws.com"}}
    ]
    [attachment] = prod.children(role)
    assert attachment.inputs["policyArn"].endswith(":policy/service-role/AmazonRDSEnhancedMonitoringRole")
    assert prod.depends_on(db, attachment), "RDS checks the role's permissions when it creates the instance"


def test_dev_rds_skips_enhanced_monitoring(dev):
    """Its OS metrics would be CloudWatch Logs ingestion (RDSOSMetrics) paid for a throw-away instance."""
    assert dev.one(RDS).inputs.get("monitoringInterval") == 0
    assert "monitoringRoleArn" not in dev.one(RDS).inputs
    assert not [r for r in dev.of_type("aws:iam/role:Role") if "monitoring" in r.name and "-db-" in r.name]


def test_an_interval_rds_does_not_accept_is_refused_before_anything_is_registered():
    args = DatabaseArgs(
        vpc_id="vpc",
        subnet_ids=["a", "b"],
        engine_version="16",
        instance_class="db.t4g.micro",
        allocated_storage_gb=20,
        max_allocated_storage_gb=50,
        backup_retention_days=1,
        monitoring_interval_seconds=45,
    )
    with pytest.raises(
        ValueError, match="monitoring_interval_seconds = 45 is invalid; allowed: 0, 1, 5, 10, 15, 30, 60"
    ):
        evaluate(lambda: Database("db", args), stack="dev")


def test_dev_rds_tears_down_cleanly_and_cheaply(dev):
    db = dev.one(RDS)
    assert db.inputs["deletionProtection"] is False and not db.protect
    assert db.inputs["skipFinalSnapshot"] is True and db.inputs["multiAz"] is False
    assert db.inputs["instanceClass"] == "db.t4g.micro"


def test_storage_autoscaling_is_on(stack):
    db = stack.one(RDS)
    assert db.inputs["maxAllocatedStorage"] > db.inputs["allocatedStorage"]


DEV_DATABASE = dict(
    engine_version="16",
    instance_class="db.t4g.micro",
    allocated_storage_gb=20,
    max_allocated_storage_gb=40,
    backup_retention_days=1,
)


def test_security_group_admits_5432_only_from_the_given_groups_and_has_no_egress():
    args = DatabaseArgs(
        vpc_id="vpc-1", subnet_ids=["s-1", "s-2"], **DEV_DATABASE, client_security_group_ids=["sg-nodes", "sg-jobs"]
    )
    graph = evaluate(lambda: Database("db", args), stack="dev")
    sg = graph.one("aws:ec2/securityGroup:SecurityGroup")
    assert sg.inputs.get("egress", []) == [] and not sg.inputs.get("ingress")
    rules = graph.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert sorted(r.inputs["referencedSecurityGroupId"] for r in rules) == ["sg-jobs", "sg-nodes"]
    for rule in rules:
        assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (5432, 5432, "tcp")
        assert "cidrIpv4" not in rule.inputs, "never a CIDR (let alone 0.0.0.0/0) on the database port"


def test_a_protected_database_without_deletion_protection_is_refused():
    args = DatabaseArgs(vpc_id="vpc-1", subnet_ids=["s-1", "s-2"], **DEV_DATABASE, protect=True)
    with pytest.raises(ValueError, match="a protected database needs deletion_protection"):
        evaluate(lambda: Database("db", args), stack="prod")


def test_secret_arn_is_exported_and_no_export_carries_a_password(stack):
    value, is_secret = stack.exports["databaseSecretArn"]
    assert value.startswith("arn:aws:secretsmanager:")
    assert "password" not in json.dumps({k: v for k, (v, _) in stack.exports.items()}).lower()
