"""The point-in-time restore command and its drill against a moto server, with a source instance built as the stack
builds it (encrypted with its own key, database subnet group, security group, parameter group, RDS-managed secret,
deletion protection).

moto's restore copies every attribute of the source onto the new instance whatever the request says, so the shape of
the new instance alone proves nothing: each test also asserts on the API requests the command sent (recorded on the
client), which is what AWS acts on."""

import itertools
import json
import logging
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import WaiterError

from ops.db_restore import DatabaseRestorer, InputError, RestoreError, derived_identifier, main, restore_window
from preview.graph import ROOT
from tests.infra.conftest import MOTO_REGION as REGION

STACK_TAGS = {"project": "clinic-platform", "stack": "prod", "environment": "prod", "managed-by": "pulumi"}
READS = ("DescribeDBInstances", "DescribeDBInstanceAutomatedBackups")


@pytest.fixture(autouse=True)
def root_logger_without_handlers():
    """Other modules' tests leave the apps' JSON handler on the root logger, writing to stdout; here stdout must hold
    only what the command prints (botocore logs through the root logger)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = []
    yield
    root.handlers[:] = saved


class Aws:
    """Clients on the moto server, and an RDS client whose every request the command sends is recorded."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=endpoint)
        self.kms = boto3.client("kms", region_name=REGION, endpoint_url=endpoint)
        self.rds = boto3.client("rds", region_name=REGION, endpoint_url=endpoint)
        self.secrets = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint)
        self.recorded = boto3.client("rds", region_name=REGION, endpoint_url=endpoint)
        self.calls: list[tuple[str, dict]] = []
        self.recorded.meta.events.register(
            "provide-client-params.rds", lambda params, model, **_: self.calls.append((model.name, dict(params)))
        )

    def restorer(self, **kwargs) -> DatabaseRestorer:
        return DatabaseRestorer(region=REGION, rds=self.recorded, poll_seconds=0.01, **kwargs)

    def writes(self) -> list[str]:
        return [name for name, _ in self.calls if name not in READS]

    def request(self, operation: str) -> dict:
        [params] = [params for name, params in self.calls if name == operation]
        return params

    def instance(self, identifier: str) -> dict | None:
        found = [i for i in self.rds.describe_db_instances()["DBInstances"] if i["DBInstanceIdentifier"] == identifier]
        return found[0] if found else None


@pytest.fixture
def aws(endpoint):
    return Aws(endpoint)


def build_source(aws: Aws, name: str) -> dict:
    """What components/database.py creates in prod."""
    vpc = aws.ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        aws.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate("abc")
    ]
    security_group = aws.ec2.create_security_group(
        GroupName=f"{name}-sg", Description="PostgreSQL from clinic workloads only", VpcId=vpc
    )["GroupId"]
    key = aws.kms.create_key(Description=f"{name}: RDS storage, snapshots and master secret")["KeyMetadata"]["Arn"]
    aws.rds.create_db_subnet_group(
        DBSubnetGroupName=f"{name}-subnets", DBSubnetGroupDescription="database subnets", SubnetIds=subnets
    )
    aws.rds.create_db_parameter_group(
        DBParameterGroupName=f"{name}-params",
        DBParameterGroupFamily="postgres16",
        Description="TLS required, slow statements logged",
    )
    aws.rds.modify_db_parameter_group(
        DBParameterGroupName=f"{name}-params",
        Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}],
    )
    aws.rds.create_db_instance(
        DBInstanceIdentifier=name,
        Engine="postgres",
        EngineVersion="16.4",
        DBInstanceClass="db.m7g.large",
        DBName="clinic",
        MasterUsername="clinic_admin",
        ManageMasterUserPassword=True,
        MasterUserSecretKmsKeyId=key,
        EnableIAMDatabaseAuthentication=True,
        StorageType="gp3",
        AllocatedStorage=100,
        MaxAllocatedStorage=1000,
        StorageEncrypted=True,
        KmsKeyId=key,
        DBSubnetGroupName=f"{name}-subnets",
        VpcSecurityGroupIds=[security_group],
        PubliclyAccessible=False,
        DBParameterGroupName=f"{name}-params",
        CACertificateIdentifier="rds-ca-rsa2048-g1",
        MultiAZ=True,
        BackupRetentionPeriod=35,
        CopyTagsToSnapshot=True,
        DeletionProtection=True,
        EnableCloudwatchLogsExports=["postgresql", "upgrade"],
        Tags=[{"Key": k, "Value": v} for k, v in STACK_TAGS.items()],
    )
    return {
        "name": name,
        "key": key,
        "security_group": security_group,
        "subnet_group": f"{name}-subnets",
        "parameter_group": f"{name}-params",
        "described": aws.instance(name),
    }


def inside_window(source: dict) -> datetime:
    """moto's window runs from creation to now; a time just after creation lies inside it."""
    return source["described"]["InstanceCreateTime"] + timedelta(milliseconds=1)


def run(capsys, aws: Aws, *argv: str, restorer: DatabaseRestorer | None = None) -> tuple[int, str, str]:
    code = main([argv[0], "--region", REGION, *argv[1:]], restorer=restorer or aws.restorer())
    out, err = capsys.readouterr()
    return code, out, err


def tags_of(instance: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance["TagList"]}


# -- restore ------------------------------------------------------------------------------------------------------


def test_restore_inside_the_window_creates_a_new_private_instance_shaped_like_the_source(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres1")
    when = inside_window(source)
    code, out, err = run(
        capsys,
        aws,
        "restore",
        "--source",
        source["name"],
        "--time",
        when.isoformat(),
        "--target",
        "clinic-prod-db-pitr-1",
        "--stack",
        "prod",
        "--json",
    )
    assert code == 0, err

    request = aws.request("RestoreDBInstanceToPointInTime")
    assert request["RestoreTime"] == when and "UseLatestRestorableTime" not in request
    assert request["SourceDBInstanceIdentifier"] == source["name"]
    assert request["TargetDBInstanceIdentifier"] == "clinic-prod-db-pitr-1"
    # AWS would otherwise use the default subnet group, security group and parameter group.
    assert request["DBSubnetGroupName"] == source["subnet_group"]
    assert request["VpcSecurityGroupIds"] == [source["security_group"]]
    assert request["DBParameterGroupName"] == source["parameter_group"]
    assert (request["DBInstanceClass"], request["StorageType"], request["MultiAZ"]) == ("db.m7g.large", "gp3", True)
    assert request["PubliclyAccessible"] is False and request["CopyTagsToSnapshot"] is True
    assert request["DeletionProtection"] is True, "restore keeps the source's deletion protection"
    assert request["ManageMasterUserPassword"] is True and request["MasterUserSecretKmsKeyId"] == source["key"]
    assert "MasterUserPassword" not in request
    assert request["EnableIAMDatabaseAuthentication"] is True and request["BackupRetentionPeriod"] == 35
    assert request["CACertificateIdentifier"] == "rds-ca-rsa2048-g1"
    assert {t["Key"]: t["Value"] for t in request["Tags"]} == {
        **STACK_TAGS,
        "managed-by": "ops.db_restore",
        "restored-from": source["name"],
        "restored-to-time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert aws.writes() == ["RestoreDBInstanceToPointInTime"], "nothing but the restore is written"

    restored = aws.instance("clinic-prod-db-pitr-1")
    assert restored["StorageEncrypted"] and restored["KmsKeyId"] == source["key"]
    assert restored["DBSubnetGroup"]["DBSubnetGroupName"] == source["subnet_group"]
    assert [g["VpcSecurityGroupId"] for g in restored["VpcSecurityGroups"]] == [source["security_group"]]
    assert restored["PubliclyAccessible"] is False
    assert tags_of(restored)["restored-from"] == source["name"]
    new_secret = restored["MasterUserSecret"]
    assert new_secret["KmsKeyId"] == source["key"]
    assert new_secret["SecretArn"] != source["described"]["MasterUserSecret"]["SecretArn"], "a new secret"
    assert (
        aws.instance(source["name"])["MasterUserSecret"]["SecretArn"]
        == source["described"]["MasterUserSecret"]["SecretArn"]
    ), "the source keeps its secret"

    result = json.loads(out)
    assert result["endpoint"] == restored["Endpoint"]["Address"] and result["port"] == 5432
    assert result["secret_arn"] == new_secret["SecretArn"]
    assert result["restore_point"] == when.strftime("%Y-%m-%dT%H:%M:%SZ") and result["rpo_seconds"] >= 0
    assert result["restore_seconds"] >= 0
    assert result["commands"] == {
        "use_restored": [
            "pulumi config set --path 'clinic-platform:database.restoredInstanceId' clinic-prod-db-pitr-1 --stack prod",
            "pulumi up --stack prod",
        ],
        "go_back": [
            "pulumi config rm --path 'clinic-platform:database.restoredInstanceId' --stack prod",
            "pulumi up --stack prod",
        ],
    }
    password = json.loads(aws.secrets.get_secret_value(SecretId=new_secret["SecretArn"])["SecretString"])["password"]
    assert password not in out + err, "the secret's value is never printed"


def test_restore_latest_names_the_target_after_the_restore_point_and_prints_the_commands(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres2")
    code, out, err = run(capsys, aws, "restore", "--source", source["name"], "--latest")
    assert code == 0, err
    request = aws.request("RestoreDBInstanceToPointInTime")
    assert request["UseLatestRestorableTime"] is True and "RestoreTime" not in request
    target = request["TargetDBInstanceIdentifier"]
    assert target.startswith(f"{source['name']}-pitr-") and len(target) == len(source["name"]) + 18
    assert aws.instance(target)["DBInstanceStatus"] == "available"
    assert f"pulumi config set --path 'clinic-platform:database.restoredInstanceId' {target}\n" in out
    assert "pulumi config rm --path 'clinic-platform:database.restoredInstanceId'" in out
    assert "RPO" in out and "restore time" in out and target in out


def test_a_derived_identifier_is_one_the_stack_setting_accepts():
    from tests.infra.test_settings import load, with_change

    target = derived_identifier(
        "clinic-prod-db-postgres" + "x" * 40 + "-", "pitr", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    )
    assert len(target) == 63 and target.endswith("x-pitr-202611241000")
    settings = load("prod", with_change("prod", "database.restoredInstanceId", target))
    assert settings.database.restored_instance_id == target


@pytest.mark.parametrize(
    "case, argv, named",
    [
        (
            "before the window",
            ["--time", "2001-01-01T00:00:00Z"],
            ["--time = 2001-01-01T00:00:00+00:00", "outside the restorable window"],
        ),
        (
            "in the future",
            ["--time", "2099-01-01T00:00:00+02:00"],
            ["--time = 2098-12-31T22:00:00+00:00", "outside the restorable window"],
        ),
        ("naive time", ["--time", "2026-11-24T09:55:00"], ["--time = '2026-11-24T09:55:00'", "no timezone"]),
        ("not a time", ["--time", "yesterday"], ["--time = 'yesterday'", "ISO-8601"]),
        ("taken target", ["--latest", "--target", "{taken}"], ["--target = '{taken}'", "taken"]),
        ("target is the source", ["--latest", "--target", "{source}"], ["--target = '{source}'", "is the source"]),
        ("invalid target", ["--latest", "--target", "Clinic_DB"], ["--target = 'Clinic_DB'", "identifier"]),
        (
            "unknown source",
            ["--latest", "--source", "clinic-nope"],
            ["--source = 'clinic-nope'", "not an RDS instance"],
        ),
    ],
)
def test_bad_input_is_refused_by_name_with_exit_2_and_no_aws_write(aws, capsys, case, argv, named):
    suffix = re.sub(r"[^a-z]+", "-", case)
    source = build_source(aws, f"clinic-prod-db-{suffix}")
    taken = build_source(aws, f"clinic-taken-{suffix}")["name"]
    before = sorted(i["DBInstanceIdentifier"] for i in aws.rds.describe_db_instances()["DBInstances"])
    fill = {"taken": taken, "source": source["name"]}
    argv = [a.format(**fill) for a in argv]
    if "--source" not in argv:
        argv = ["--source", source["name"], *argv]
    code, out, err = run(capsys, aws, "restore", *argv, "--json")
    assert code == 2, f"{case}: {err}"
    for text in named:
        assert text.format(**fill) in err, f"{case}: {err}"
    assert json.loads(out)["exit_code"] == 2
    assert aws.writes() == [], f"{case}: {aws.calls}"
    assert sorted(i["DBInstanceIdentifier"] for i in aws.rds.describe_db_instances()["DBInstances"]) == before


def test_dry_run_validates_and_shows_the_request_but_writes_nothing(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres3")
    code, out, err = run(
        capsys,
        aws,
        "restore",
        "--source",
        source["name"],
        "--time",
        inside_window(source).isoformat(),
        "--target",
        "clinic-prod-db-dry",
        "--dry-run",
        "--json",
    )
    assert code == 0, err
    planned = json.loads(out)
    assert planned["dry_run"] is True
    assert planned["request"]["DBSubnetGroupName"] == source["subnet_group"]
    assert planned["request"]["VpcSecurityGroupIds"] == [source["security_group"]]
    assert aws.writes() == [] and aws.instance("clinic-prod-db-dry") is None


class FailingWaiter:
    def wait(self, **_):
        raise WaiterError(
            name="DBInstanceAvailable",
            reason="Max attempts exceeded",
            last_response={"DBInstances": [{"DBInstanceStatus": "creating"}]},
        )


def stub_available_waiter(aws: Aws) -> None:
    real = aws.recorded.get_waiter
    aws.recorded.get_waiter = lambda name: FailingWaiter() if name == "db_instance_available" else real(name)


def test_a_restore_whose_wait_times_out_is_left_in_place_and_named(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres4")
    stub_available_waiter(aws)
    code, _, err = run(
        capsys,
        aws,
        "restore",
        "--source",
        source["name"],
        "--latest",
        "--target",
        "clinic-prod-db-slow",
        "--timeout",
        "5",
    )
    assert code == 1
    # The stubbed waiter gave up; moto's instance was available at once, hence the status in the message.
    assert "clinic-prod-db-slow is still 'available' after 5 s" in err and "left as it is" in err
    assert aws.instance("clinic-prod-db-slow") is not None
    assert "DeleteDBInstance" not in aws.writes()


# -- drill --------------------------------------------------------------------------------------------------------


def test_drill_restores_checks_deletes_and_prints_rpo_rto_as_one_json_line(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres5")
    code, out, err = run(capsys, aws, "drill", "--source", source["name"], "--json")
    assert code == 0, err
    [line] = out.splitlines()
    report = json.loads(line)
    assert report["drill"] == "passed" and report["error"] is None
    assert report["target"].startswith(f"{source['name']}-drill-")
    assert isinstance(report["rpo_seconds"], int) and isinstance(report["rto_seconds"], float)
    assert report["rto_target_seconds"] == 1800
    assert report["checks"] == {
        "available": True,
        "encrypted": True,
        "source_kms_key": True,
        "private": True,
        "source_subnet_group": True,
        "source_security_groups": True,
        "managed_secret": True,
    }
    assert report["deleted"] is True

    restore = aws.request("RestoreDBInstanceToPointInTime")
    assert restore["UseLatestRestorableTime"] is True and restore["DeletionProtection"] is False
    assert {"Key": "restore-drill", "Value": "true"} in restore["Tags"]
    delete = aws.request("DeleteDBInstance")
    assert delete == {
        "DBInstanceIdentifier": report["target"],
        "SkipFinalSnapshot": True,
        "DeleteAutomatedBackups": True,
    }
    assert aws.instance(report["target"]) is None
    assert aws.instance(source["name"])["DeletionProtection"] is True, "the source is never touched"
    assert all(params.get("DBInstanceIdentifier") != source["name"] for name, params in aws.calls if name not in READS)


def test_drill_deletes_its_instance_even_when_the_wait_fails(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres6")
    stub_available_waiter(aws)
    code, out, err = run(capsys, aws, "drill", "--source", source["name"], "--json", "--timeout", "60")
    assert code == 1
    report = json.loads(out)
    assert report["drill"] == "failed" and report["rto_seconds"] is None
    assert "still 'available' after 60 s" in report["error"] and report["error"] in err
    assert report["deleted"] is True and aws.instance(report["target"]) is None
    assert aws.writes()[0] == "RestoreDBInstanceToPointInTime" and "DeleteDBInstance" in aws.writes()


def test_drill_over_its_rto_target_exits_3_after_cleaning_up(aws, capsys):
    source = build_source(aws, "clinic-prod-db-postgres7")
    # Every clock reading is 2000 s after the previous one: the restore "takes" 2000 s.
    clock = itertools.count(0, 2000)
    restorer = aws.restorer(monotonic=lambda: float(next(clock)))
    code, out, err = run(
        capsys, aws, "drill", "--source", source["name"], "--rto-target-seconds", "1800", restorer=restorer
    )
    assert code == 3
    report = json.loads(out.splitlines()[-1])
    assert report["drill"] == "rto-missed" and report["rto_seconds"] == 2000.0 and report["error"] is None
    assert "the restore took 2000 s, more than the RTO target of 1800 s" in err
    assert report["deleted"] is True and aws.instance(report["target"]) is None


def test_clean_up_never_deletes_an_instance_that_is_not_a_tagged_drill(aws):
    source = build_source(aws, "clinic-prod-db-postgres8")
    restorer = aws.restorer()
    with pytest.raises(RestoreError, match="refusing to delete"):
        restorer.delete(source["name"], source["name"], 10)
    aws.rds.restore_db_instance_to_point_in_time(
        SourceDBInstanceIdentifier=source["name"],
        TargetDBInstanceIdentifier="clinic-prod-db-drill-untagged",
        UseLatestRestorableTime=True,
        Tags=[{"Key": "x", "Value": "y"}],
    )
    with pytest.raises(RestoreError, match="refusing to delete"):
        restorer.delete("clinic-prod-db-drill-untagged", source["name"], 10)
    assert aws.writes() == [] and aws.instance("clinic-prod-db-drill-untagged") is not None


# -- pure functions -----------------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
INSTANCE = {
    "DBInstanceIdentifier": "clinic-prod-db",
    "DbiResourceId": "db-NEW",
    "BackupRetentionPeriod": 35,
    "InstanceCreateTime": NOW - timedelta(days=400),
    "LatestRestorableTime": NOW - timedelta(minutes=4),
}


def test_the_window_comes_from_this_instances_automated_backup_not_a_retained_one():
    backups = [
        {"DbiResourceId": "db-OLD", "Status": "retained", "RestoreWindow": {"EarliestTime": NOW - timedelta(days=90)}},
        {"DbiResourceId": "db-NEW", "Status": "active", "RestoreWindow": {"EarliestTime": NOW - timedelta(days=34)}},
    ]
    window = restore_window(INSTANCE, backups, NOW)
    assert (window.earliest, window.latest) == (NOW - timedelta(days=34), NOW - timedelta(minutes=4))
    assert window.earliest_source == "automated backup RestoreWindow"


def test_without_a_restore_window_the_earliest_time_is_estimated_from_creation_and_retention():
    assert restore_window(INSTANCE, [], NOW).earliest == NOW - timedelta(days=35)
    young = {**INSTANCE, "InstanceCreateTime": NOW - timedelta(hours=2)}
    assert restore_window(young, [], NOW).earliest == NOW - timedelta(hours=2)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"BackupRetentionPeriod": 0}, "BackupRetentionPeriod = 0"),
        ({"LatestRestorableTime": None}, "no LatestRestorableTime"),
    ],
)
def test_an_instance_without_backups_has_no_window(change, named):
    with pytest.raises(InputError, match=named):
        restore_window({**INSTANCE, **change}, [], NOW)


def test_the_module_runs_as_a_command():
    done = subprocess.run(
        [sys.executable, "-m", "ops.db_restore", "drill", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--rto-target-seconds" in done.stdout
