"""DatabaseBackup wired to the Database component for both committed stacks: prod has a daily plan into a
KMS-encrypted, locked vault with a copy in eu-central-1 through a provider for that region; dev has none of it."""

import pytest

from components.backup import DatabaseBackup, DatabaseBackupArgs, validate_backup_args
from components.database import Database
from stacks.component_args import backup_args, database_args
from tests.infra.pulumi_mocks import evaluate, stack_settings

VAULT = "aws:backup/vault:Vault"
PLAN = "aws:backup/plan:Plan"


def _build(stack: str):
    s = stack_settings(stack)
    made = {}

    def build():
        database = Database(
            f"clinic-{stack}-db",
            database_args(
                s.database,
                vpc_id="vpc-1",
                subnet_ids=["subnet-1", "subnet-2"],
                client_security_group_ids=[],
                protect=s.protect_data,
                tags={"stack": stack},
            ),
        )
        made["backup"] = DatabaseBackup(
            f"clinic-{stack}-backup",
            backup_args(
                s.backup,
                instance_arns=[database.instance_arn],
                region=s.region,
                protect=s.protect_data,
                tags={"stack": stack},
            ),
        )

    return evaluate(build, stack=stack, region=s.region), made["backup"]


@pytest.fixture(scope="module")
def prod():
    return _build("prod")[0]


def ours(graph):
    return graph.descendants(graph.one("clinic:index:DatabaseBackup"))


def test_dev_creates_no_backup_resource_and_reports_none():
    graph, backup = _build("dev")
    assert ours(graph) == [], [r.name for r in ours(graph)]
    assert (backup.vault_name, backup.plan_id, backup.copy_vault_arn) == (None, None, None)


def test_prod_backs_up_the_database_daily_for_35_days_into_its_own_encrypted_vault(prod):
    plan = prod.one(PLAN)
    vault = prod.one(VAULT, "clinic-prod-backup-vault")
    key = prod.one("aws:kms/key:Key", "clinic-prod-backup-vault-key")
    assert vault.inputs["kmsKeyArn"] == key.state["arn"], f"{vault.name} is not encrypted with its own key"
    assert key.inputs["enableKeyRotation"] is True, key.name
    (rule,) = plan.inputs["rules"]
    assert rule["targetVaultName"] == vault.state["name"], plan.name
    assert rule["schedule"].startswith("cron(") and rule["lifecycle"]["deleteAfter"] == 35, plan.name
    assert rule["enableContinuousBackup"] is False, f"{plan.name} would take over RDS's automated backups"
    selection = prod.one("aws:backup/selection:Selection")
    assert selection.inputs["resources"] == [prod.one("aws:rds/instance:Instance").state["arn"]], selection.name
    assert selection.inputs["planId"] == plan.state.get("id", f"{plan.name}-id"), selection.name


def test_prod_copies_every_recovery_point_to_a_vault_in_eu_central_1_through_a_provider_for_it(prod):
    (rule,) = prod.one(PLAN).inputs["rules"]
    copy_vault = prod.one(VAULT, "clinic-prod-backup-copy-vault")
    (copy,) = rule["copyActions"]
    assert copy["destinationVaultArn"] == copy_vault.state["arn"], "the plan does not copy to the copy vault"
    assert copy["lifecycle"]["deleteAfter"] == 35
    copy_key = prod.one("aws:kms/key:Key", "clinic-prod-backup-copy-vault-key")
    assert copy_vault.inputs["kmsKeyArn"] == copy_key.state["arn"], f"{copy_vault.name} has not its own key"
    for resource in (
        copy_vault,
        copy_key,
        prod.one("aws:backup/vaultLockConfiguration:VaultLockConfiguration", "clinic-prod-backup-copy-vault-lock"),
    ):
        provider = prod.by_urn[resource.provider]
        assert provider.type == "pulumi:providers:aws" and provider.inputs["region"] == "eu-central-1", resource.name
    assert ":eu-central-1:" in copy_vault.state["arn"] and ":eu-central-1:" in copy_key.state["arn"]
    assert prod.one(VAULT, "clinic-prod-backup-vault").provider == "", "the main vault stays in the stack's region"


def test_prod_vaults_and_keys_are_protected_and_locked_in_governance_mode(prod):
    for role in ("vault", "copy-vault"):
        vault = prod.one(VAULT, f"clinic-prod-backup-{role}")
        key = prod.one("aws:kms/key:Key", f"clinic-prod-backup-{role}-key")
        assert vault.protect and key.protect, f"{vault.name} / {key.name} must be protected"
        assert vault.inputs["forceDestroy"] is False, vault.name
        lock = prod.one("aws:backup/vaultLockConfiguration:VaultLockConfiguration", f"clinic-prod-backup-{role}-lock")
        assert lock.inputs["backupVaultName"] == vault.state["name"], lock.name
        assert lock.inputs["minRetentionDays"] == 35, lock.name
        assert "changeableForDays" not in lock.inputs, f"{lock.name} would be compliance mode (irreversible)"


def test_backup_role_is_assumed_by_aws_backup_with_its_managed_policies_attached_before_selection(prod):
    role = prod.one("aws:iam/role:Role", "clinic-prod-backup-role")
    statement = role.input("assumeRolePolicy", "Statement")[0]
    assert statement["Principal"] == {"Service": "backup.amazonaws.com"}, role.name
    attachments = [
        a
        for a in prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if a.inputs["role"] == role.state["name"]
    ]
    assert sorted(a.inputs["policyArn"].rsplit("/", 1)[1] for a in attachments) == [
        "AWSBackupServiceRolePolicyForBackup",
        "AWSBackupServiceRolePolicyForRestores",
    ]
    selection = prod.one("aws:backup/selection:Selection")
    assert selection.inputs["iamRoleArn"] == role.state["arn"], selection.name
    for attachment in attachments:
        assert prod.depends_on(selection, attachment), f"{selection.name} could run before {attachment.name}"


def test_the_daily_job_starts_after_rds_own_backup_and_maintenance_windows(prod):
    (rule,) = prod.one(PLAN).inputs["rules"]
    minute, hour = rule["schedule"].removeprefix("cron(").split()[:2]
    starts = int(hour) * 60 + int(minute)
    db = prod.one("aws:rds/instance:Instance")

    def ends(window: str) -> int:  # "02:00-03:00" or "sun:03:30-sun:04:30" -> minutes after midnight
        h, m = window.split("-")[1].split(":")[-2:]
        return int(h) * 60 + int(m)

    for window in (db.inputs["backupWindow"], db.inputs["maintenanceWindow"]):
        assert starts >= ends(window), f"the backup job starts at {hour}:{minute} UTC, inside {window}"


def _args(**overrides):
    values = dict(
        instance_arns=["arn:aws:rds:eu-west-1:123456789012:db:x"],
        retention_days=35,
        copy_region="eu-central-1",
        region="eu-west-1",
        protect=True,
    )
    return DatabaseBackupArgs(**{**values, **overrides})


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"copy_region": "eu-west-1"},
            "copy_region = 'eu-west-1' is invalid; allowed: an AWS region other than eu-west-1",
        ),
        ({"enabled": False}, "enabled = False is invalid for a protected stack"),
        ({"instance_arns": []}, r"instance_arns = \[\] is invalid"),
        ({"region": "europe"}, "region = 'europe' is invalid"),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_backup_args(_args(**overrides))


def test_backups_without_a_copy_region_have_no_copy_vault_and_no_second_provider():
    made = {}

    def build():
        made["b"] = DatabaseBackup("b", _args(copy_region=None, protect=False))

    graph = evaluate(build, stack="dev")
    assert [v.name for v in graph.of_type(VAULT)] == ["b-vault"]
    assert graph.of_type("pulumi:providers:aws") == []
    assert "copyActions" not in graph.one(PLAN).inputs["rules"][0]
    assert made["b"].copy_vault_arn is None
    assert graph.of_type("aws:backup/vaultLockConfiguration:VaultLockConfiguration") == [], "unprotected: no lock"


def test_the_program_backs_up_prods_database_across_regions_and_has_no_backup_in_dev(dev, prod):
    """As __main__.py wires it: dev registers no backup at all; prod's plan selects the stack's own instance."""
    assert dev.of_type("clinic:index:DatabaseBackup") == [] and dev.of_type(VAULT) == []
    selection = prod.one("aws:backup/selection:Selection")
    assert selection.inputs["resources"] == [prod.one("aws:rds/instance:Instance").state["arn"]], selection.name
    regions = sorted(prod.by_urn[v.provider].inputs["region"] if v.provider else "stack" for v in prod.of_type(VAULT))
    assert regions == ["eu-central-1", "stack"], regions
