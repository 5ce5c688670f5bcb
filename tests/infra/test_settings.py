"""Stack settings: every bad input fails before any resource exists, naming the key, the value and what is allowed."""

import copy

import pytest

from stacks.settings import (
    DEFAULTS,
    GROUPS,
    NodeGroupSettings,
    PlatformSettings,
    StackSettingsError,
    _decode,
    load_settings,
)
from tests.infra.pulumi_mocks import ROOT, stack_config


def committed(stack: str) -> dict:
    prefix = "clinic-platform:"
    return {k[len(prefix) :]: _decode(v) for k, v in stack_config(stack).items() if k.startswith(prefix)}


def load(stack: str, raw: dict, region: str = "eu-west-1"):
    return load_settings(raw, stack=stack, region=region)


def with_change(stack: str, path: str, value):
    raw = copy.deepcopy(committed(stack))
    group, _, key = path.partition(".")
    if key:
        raw.setdefault(group, {})[key] = value
    else:
        raw[group] = value
    return raw


def test_committed_stack_files_load_with_their_environment_defaults():
    dev, prod = load("dev", committed("dev")), load("prod", committed("prod"))
    assert (dev.environment, dev.network.az_count, dev.network.nat_mode) == ("dev", 2, "single")
    assert (prod.environment, prod.network.az_count, prod.network.nat_mode) == ("prod", 3, "per-az")
    assert prod.database.deletion_protection and prod.database.multi_az and prod.database.backup_retention_days == 35
    assert dev.database.engine_version == prod.database.engine_version == DEFAULTS["prod"]["database"].engine_version
    assert prod.email.domain == "clinic.example.org" and dev.email.domain is None
    assert prod.protect_data and not dev.protect_data


def test_numbers_and_booleans_set_as_strings_by_the_cli_are_accepted():
    raw = with_change("dev", "network.azCount", "3")
    raw["database"]["multiAz"] = "true"
    raw["database"]["engineVersion"] = 17
    settings = load("dev", raw)
    assert settings.network.az_count == 3 and settings.database.multi_az is True
    assert settings.database.engine_version == "17"


BAD_INPUTS = [
    # (stack, key path, value, words the error must contain)
    ("dev", "environment", "staging", ["environment = 'staging'", "dev, prod"]),
    ("dev", "network.vpcCidr", "10.0.0.0/33", ["network.vpcCidr = '10.0.0.0/33'", "IPv4 CIDR"]),
    ("dev", "network.vpcCidr", "10.0.0.1/16", ["network.vpcCidr = '10.0.0.1/16'", "no host bits"]),
    ("dev", "network.vpcCidr", "54.0.0.0/16", ["network.vpcCidr = '54.0.0.0/16'", "private"]),
    ("dev", "network.vpcCidr", "10.0.0.0/24", ["network.vpcCidr = '10.0.0.0/24'", "/16 to /20"]),
    (
        "dev",
        "network.kubernetesServiceCidr",
        "10.20.0.0/16",
        ["network.kubernetesServiceCidr = '10.20.0.0/16'", "does not overlap network.vpcCidr 10.20.0.0/16"],
    ),
    ("dev", "network.azCount", 1, ["network.azCount = 1", "2 to 4"]),
    ("dev", "network.azCount", 7, ["network.azCount = 7", "2 to 4"]),
    ("dev", "network.natMode", "gateway", ["network.natMode = 'gateway'", "single, per-az"]),
    ("prod", "network.natMode", "single", ["network.natMode = 'single'", "per-az in prod"]),
    ("prod", "network.flowLogs", False, ["network.flowLogs = False", "true in prod"]),
    ("dev", "network.flowLogRetentionDays", 10, ["network.flowLogRetentionDays = 10", "CloudWatch Logs retention"]),
    ("dev", "database.instanceClass", "db.x9.huge", ["database.instanceClass = 'db.x9.huge'", "db.t4g.micro"]),
    ("prod", "database.instanceClass", "db.t4g.medium", ["database.instanceClass = 'db.t4g.medium'", "non-burstable"]),
    ("dev", "database.engineVersion", "9.6", ["database.engineVersion = '9.6'", "15, 16, 17"]),
    ("dev", "database.backupRetentionDays", 0, ["database.backupRetentionDays = 0", "1 to 35"]),
    ("dev", "database.backupRetentionDays", 36, ["database.backupRetentionDays = 36", "1 to 35"]),
    ("prod", "database.backupRetentionDays", 7, ["database.backupRetentionDays = 7", "14 to 35 in prod"]),
    ("prod", "database.deletionProtection", False, ["database.deletionProtection = False", "true in prod"]),
    ("prod", "database.multiAz", False, ["database.multiAz = False", "true in prod"]),
    ("dev", "database.maxAllocatedStorageGb", 10, ["database.maxAllocatedStorageGb = 10", "20 to 65536"]),
    ("dev", "database.username", "postgres", ["database.username = 'postgres'", "not reserved"]),
    ("dev", "database.name", "Clinic-DB", ["database.name = 'Clinic-DB'", "lowercase"]),
    ("dev", "database.multiAz", "yes", ["database.multiAz = 'yes'", "true or false"]),
    (
        "dev",
        "database.monitoringIntervalSeconds",
        20,
        ["database.monitoringIntervalSeconds = 20", "0, 1, 5, 10, 15, 30, 60"],
    ),
    ("dev", "database.monitoringIntervalSeconds", "often", ["database.monitoringIntervalSeconds = 'often'"]),
    ("prod", "database.monitoringIntervalSeconds", 0, ["database.monitoringIntervalSeconds = 0", "in prod"]),
    ("dev", "storage.corsAllowedOrigins", ["*"], ["storage.corsAllowedOrigins = '*'", "no wildcard"]),
    (
        "prod",
        "storage.corsAllowedOrigins",
        ["http://clinic.example.org"],
        ["storage.corsAllowedOrigins = 'http://clinic.example.org'", "https"],
    ),
    ("dev", "storage.noncurrentVersionDays", 0, ["storage.noncurrentVersionDays = 0", "1 to 3650"]),
    ("prod", "email.domain", None, ["email.domain = None", "a domain in prod"]),
    ("dev", "email.fromAddress", "not-an-email", ["email.fromAddress = 'not-an-email'", "email address"]),
    (
        "prod",
        "email.fromAddress",
        "no-reply@elsewhere.org",
        ["email.fromAddress = 'no-reply@elsewhere.org'", "at email.domain (clinic.example.org)"],
    ),
    ("dev", "clusterName", "Clinic_Dev", ["clusterName = 'Clinic_Dev'", "lowercase"]),
    ("dev", "tags", {"aws:owner": "x"}, ["tags key 'aws:owner'", "not starting with 'aws:'"]),
    ("dev", "network.vpcCidrr", "10.0.0.0/16", ["network.vpcCidrr", "did you mean 'vpcCidr'"]),
    ("dev", "databse", {}, ["databse is not a setting", "did you mean 'database'"]),
    ("dev", "network", "10.0.0.0/16", ["network = '10.0.0.0/16'", "a map of settings"]),
    ("dev", "cluster.kubernetesVersion", "1.20", ["cluster.kubernetesVersion = '1.20'", "1.33, 1.34, 1.35"]),
    (
        "prod",
        "cluster.publicAccessCidrs",
        ["0.0.0.0/0"],
        ["cluster.publicAccessCidrs = '0.0.0.0/0'", "never the whole"],
    ),
    ("dev", "cluster.publicAccessCidrs", ["office"], ["cluster.publicAccessCidrs = 'office'", "CIDRs"]),
    (
        "dev",
        "cluster.adminRoleArns",
        ["arn:aws:iam::123456789012:user/bob"],
        ["cluster.adminRoleArns = 'arn:aws:iam::123456789012:user/bob'", "IAM role ARNs"],
    ),
    ("dev", "cluster.janitorTimeoutSeconds", 5, ["cluster.janitorTimeoutSeconds = 5", "60 to 3600"]),
    ("dev", "cluster.nodeGroups", [], ["cluster.nodeGroups = []", "a non-empty list"]),
]

NODE_GROUP_CASES = [
    ("prod", {"capacityType": "SPOT"}, ["cluster.nodeGroups[0].capacityType = 'SPOT'", "ON_DEMAND in prod"]),
    ("prod", {"minSize": 1, "desiredSize": 1}, ["cluster.nodeGroups[0].minSize = 1", "one node per AZ"]),
    ("dev", {"minSize": 3, "desiredSize": 2}, ["cluster.nodeGroups[0].desiredSize = 2", "minSize <= desiredSize"]),
    ("dev", {"instanceTypes": ["m7g.large", "m6i.large"]}, ["one architecture"]),
    ("dev", {"instanceTypes": []}, ["cluster.nodeGroups[0].instanceTypes = []", "EC2 instance types"]),
    ("dev", {"maxUnavailable": 9}, ["cluster.nodeGroups[0].maxUnavailable = 9", "at most maxSize (3)"]),
    ("dev", {"capacityTyp": "SPOT"}, ["cluster.nodeGroups[0].capacityTyp", "did you mean 'capacityType'"]),
]


@pytest.mark.parametrize("stack,change,expected", NODE_GROUP_CASES, ids=[str(c[1]) for c in NODE_GROUP_CASES])
def test_bad_node_group_is_refused_naming_its_index(stack, change, expected):
    raw = copy.deepcopy(committed(stack))
    raw["cluster"]["nodeGroups"][0].update(change)
    with pytest.raises(StackSettingsError) as error:
        load(stack, raw)
    for words in expected:
        assert words in str(error.value), f"{change}: expected {words!r} in\n{error.value}"


def test_node_group_names_must_be_distinct():
    raw = copy.deepcopy(committed("dev"))
    raw["cluster"]["nodeGroups"].append(dict(raw["cluster"]["nodeGroups"][0]))
    with pytest.raises(StackSettingsError, match="node groups with distinct names"):
        load("dev", raw)


@pytest.mark.parametrize("stack,path,value,expected", BAD_INPUTS, ids=[f"{c[0]}:{c[1]}={c[2]!r}" for c in BAD_INPUTS])
def test_bad_setting_is_refused_with_key_value_and_allowed(stack, path, value, expected):
    with pytest.raises(StackSettingsError) as error:
        load(stack, with_change(stack, path, value))
    message = str(error.value)
    for words in expected:
        assert words in message, f"error for {path}={value!r} should mention {words!r}:\n{message}"


def test_storage_ceiling_below_allocated_storage_is_refused():
    raw = with_change("dev", "database.allocatedStorageGb", 50)
    raw["database"]["maxAllocatedStorageGb"] = 30
    with pytest.raises(
        StackSettingsError, match=r"database.maxAllocatedStorageGb = 30 .*at least database.allocatedStorageGb \(50\)"
    ):
        load("dev", raw)


def test_missing_region_is_refused():
    with pytest.raises(StackSettingsError, match=r"aws:region = None is invalid"):
        load("dev", committed("dev"), region=None)


def test_every_problem_is_reported_at_once():
    raw = with_change("prod", "database.deletionProtection", False)
    raw["network"]["azCount"] = 9
    raw["email"]["fromAddress"] = "x"
    with pytest.raises(StackSettingsError) as error:
        load("prod", raw)
    assert len(error.value.problems) == 3, error.value.problems


def test_dev_may_allow_http_localhost_origin_for_local_front_ends():
    assert load("dev", committed("dev")).storage.cors_allowed_origins == ("http://localhost:5173",)


OBSERVABILITY_AND_BACKUP_BAD_INPUTS = [
    ("prod", "observability.monitoring", False, ["observability.monitoring = False", "true in prod"]),
    ("prod", "observability.alarmEmails", [], ["observability.alarmEmails = []", "at least one address in prod"]),
    ("dev", "observability.alarmEmails", ["oncall"], ["observability.alarmEmails = 'oncall'", "email addresses"]),
    ("dev", "observability.alarmEmails", ["a@clinic.example.org", "a@clinic.example.org"], ["without repeats"]),
    ("dev", "observability.logRetentionDays", 10, ["observability.logRetentionDays = 10", "CloudWatch Logs retention"]),
    ("dev", "observability.prometheusRetentionDays", 0, ["observability.prometheusRetentionDays = 0", "1 to 90"]),
    ("dev", "observability.prometheusStorageGb", 5000, ["observability.prometheusStorageGb = 5000", "10 to 1000"]),
    ("dev", "observability.alertEmails", [], ["observability.alertEmails", "did you mean 'alarmEmails'"]),
    ("prod", "backup.enabled", False, ["backup.enabled = False", "true in prod"]),
    ("prod", "backup.retentionDays", 14, ["backup.retentionDays = 14", "35 to 3650 in prod"]),
    ("prod", "backup.copyRegion", "eu-west-1", ["backup.copyRegion = 'eu-west-1'", "other than aws:region"]),
    ("prod", "backup.copyRegion", "Frankfurt", ["backup.copyRegion = 'Frankfurt'", "an AWS region"]),
    ("dev", "backup.copyRegion", "eu-central-1", ["backup.copyRegion = 'eu-central-1'", "backup.enabled is true"]),
    ("dev", "database.restoredInstanceId", "Clinic_DB", ["database.restoredInstanceId = 'Clinic_DB'", "identifier"]),
    ("dev", "database.restoredInstanceId", "clinic--db", ["database.restoredInstanceId = 'clinic--db'"]),
]


@pytest.mark.parametrize("stack,path,value,expected", OBSERVABILITY_AND_BACKUP_BAD_INPUTS)
def test_bad_observability_and_backup_setting_is_refused_by_name(stack, path, value, expected):
    with pytest.raises(StackSettingsError) as raised:
        load(stack, with_change(stack, path, value))
    for words in expected:
        assert words in str(raised.value), f"{path}={value!r}: {words!r} not in {raised.value}"


AUDIT_AND_REPLICA_BAD_INPUTS = [
    ("prod", "audit.retentionDays", 365, ["audit.retentionDays = 365", "2190 to 7300 in prod"]),
    ("dev", "audit.retentionDays", 0, ["audit.retentionDays = 0", "an integer from 1 to 7300"]),
    ("dev", "audit.retentionDays", 7301, ["audit.retentionDays = 7301", "an integer from 1 to 7300"]),
    ("dev", "audit.retentionDays", "forever", ["audit.retentionDays = 'forever'", "an integer from 1 to 7300"]),
    ("dev", "audit.retention", 30, ["audit.retention = 30", "did you mean 'retentionDays'"]),
    ("dev", "audit.readerRoleArns", ["auditor"], ["audit.readerRoleArns = 'auditor'", "IAM role ARNs"]),
    ("prod", "storage.replicateExams", False, ["storage.replicateExams = False", "true in prod"]),
    ("dev", "storage.replicateExams", "yes", ["storage.replicateExams = 'yes'", "true or false"]),
    # Dev has no backup.copyRegion: the replica would have nowhere to go.
    ("dev", "storage.replicateExams", True, ["storage.replicateExams = True", "unless backup.copyRegion"]),
    ("prod", "backup.copyRegion", None, ["storage.replicateExams = True", "unless backup.copyRegion"]),
]


@pytest.mark.parametrize("stack,path,value,expected", AUDIT_AND_REPLICA_BAD_INPUTS)
def test_bad_audit_or_replica_setting_is_refused_by_name(stack, path, value, expected):
    with pytest.raises(StackSettingsError) as raised:
        load(stack, with_change(stack, path, value))
    for words in expected:
        assert words in str(raised.value), f"{path}={value!r}: {words!r} not in {raised.value}"


def test_prod_keeps_six_years_of_audit_and_a_replica_and_dev_stays_cheap():
    dev, prod = load("dev", committed("dev")), load("prod", committed("prod"))
    assert (dev.audit.retention_days, prod.audit.retention_days) == (14, 2557)
    assert prod.storage.replicate_exams and not dev.storage.replicate_exams
    assert load("prod", with_change("prod", "audit.retentionDays", "2190")).audit.retention_days == 2190


def test_prod_is_watched_and_backed_up_and_dev_stays_cheap():
    dev, prod = load("dev", committed("dev")), load("prod", committed("prod"))
    assert prod.observability.monitoring and prod.observability.alarm_emails == ("oncall@clinic.example.org",)
    assert prod.backup.enabled and prod.backup.retention_days == 35 and prod.backup.copy_region == "eu-central-1"
    assert not dev.observability.monitoring and not dev.backup.enabled and dev.backup.copy_region is None
    assert (dev.observability.log_retention_days, prod.observability.log_retention_days) == (7, 365)
    assert dev.database.restored_instance_id is None and prod.database.restored_instance_id is None


def test_a_restored_instance_id_is_accepted():
    settings = load("prod", with_change("prod", "database.restoredInstanceId", "clinic-prod-db-pitr-202611241000"))
    assert settings.database.restored_instance_id == "clinic-prod-db-pitr-202611241000"


def test_apps_at_full_scale_must_fit_under_the_database_connections_alarm():
    from limits import API_POD_DB_CONNECTIONS, max_db_connections, peak_app_db_connections

    dev = load("dev", committed("dev"))
    assert peak_app_db_connections(dev.apps.api_max_replicas, dev.apps.notifier_replicas) <= 0.8 * max_db_connections(
        dev.database.instance_class
    ), "the committed dev stack fits its db.t4g.micro"
    raw = with_change("dev", "apps.apiMaxReplicas", 4)  # one more API pod: 16 more connections than 89 allow
    with pytest.raises(StackSettingsError) as error:
        load("dev", raw)
    message = str(error.value)
    assert (
        "apps.apiMaxReplicas = 4" in message
        and "'db.t4g.micro'" in message
        and "allowed: apps.apiMaxReplicas at most 3" in message
        and f"{API_POD_DB_CONNECTIONS} per API pod" in message
    )
    raw["database"]["instanceClass"] = "db.t4g.small"  # the remedy the message names
    assert load("dev", raw).apps.api_max_replicas == 4


def test_prod_may_scale_the_api_to_its_committed_ceiling_and_not_past_what_its_class_allows():
    prod = load("prod", committed("prod"))
    assert prod.apps.api_max_replicas == 12
    with pytest.raises(StackSettingsError, match=r"apps.apiMaxReplicas = 100 .* at most 41 "):
        load("prod", with_change("prod", "apps.apiMaxReplicas", 100))


# --- the models themselves ------------------------------------------------------------------------------------------


def _fields(model=PlatformSettings, prefix=""):
    """(key as written in a stack file, field) for every setting, groups expanded."""
    for name, field in model.model_fields.items():
        if name == "stack":
            continue
        key = "aws:region" if name == "region" else prefix + field.alias
        if name in GROUPS_BY_FIELD:
            yield from _fields(field.annotation, key + ".")
        else:
            yield key, field


GROUPS_BY_FIELD = {name for name, field in PlatformSettings.model_fields.items() if field.alias in GROUPS}


def test_every_setting_says_what_it_allows_and_what_it_is_for():
    from stacks.settings import _allowed_in

    for key, field in [*_fields(), *_fields(NodeGroupSettings, "cluster.nodeGroups[].")]:
        if key.endswith("nodeGroups"):
            continue
        assert _allowed_in(field.metadata or field.annotation) or key == "environment", f"{key}: no Allowed text"
        assert field.description or key in ("environment",), f"{key}: no docstring"


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_each_environments_defaults_keep_that_environments_rules(environment):
    """The defaults are model instances built without a stack; validated as that environment's they must pass (prod's
    email and alarm addresses, and its host name with a zone or certificate, have no default: a prod stack file must
    name them)."""
    context = {"environment": environment, "region": "eu-west-1", "az_count": DEFAULTS[environment]["network"].az_count}
    named_by_the_stack = ("observability", "apps", "backup") if environment == "prod" else ("observability",)
    for group, default in DEFAULTS[environment].items():
        if group not in named_by_the_stack:
            type(default).model_validate(
                default.model_dump(by_alias=True), context=context, by_alias=True, by_name=False
            )
    # Nor have CI's deploy role and the runner's connection: every stack file names its own.
    deploy_role = "arn:aws:iam::123456789012:role/clinic-deploy"
    raw = {
        "environment": environment,
        "email": {"fromAddress": "a@clinic.example.org", "domain": "clinic.example.org"},
        "images": {"api": "0.1.0", "notifier": "0.1.0", "fileProcessor": "0.1.0"},
        "observability": {"alarmEmails": ["a@clinic.example.org"]},
        "cluster": {"deployRoleArn": deploy_role},
        "ci": {
            "githubConnectionArn": "arn:aws:codeconnections:eu-west-1:123456789012:connection/"
            "00000000-0000-4000-8000-000000000000",
            "repository": "org/repo",
        },
    }
    # Nor has the clinic's host name (the links the API emails are built on it).
    raw["apps"] = {"hostname": "clinic.example.org"}
    if environment == "prod":
        raw["apps"] = {"hostname": "clinic.example.org", "hostedZoneId": "Z0123456789EXAMPLE"}
        # Nor has the second region prod's exam replica (and the database's copies) live in.
        raw["backup"] = {"copyRegion": "eu-central-1"}
    settings = load(environment, raw)
    assert settings.cluster.deploy_role_arn == deploy_role
    for group, default in DEFAULTS[environment].items():
        if group == "cluster":
            assert settings.cluster.model_copy(update={"deploy_role_arn": None}) == default
        elif group == "apps":
            assert settings.apps.model_copy(update={"hostname": None, "hosted_zone_id": None}) == default
        elif group not in named_by_the_stack:
            assert getattr(settings, group) == default, group


def test_snake_case_keys_are_refused_with_the_camel_case_one_suggested():
    with pytest.raises(StackSettingsError, match=r"database.multi_az = True is invalid; .*did you mean 'multiAz'"):
        load("dev", with_change("dev", "database.multi_az", True))


def test_a_refused_list_item_is_reported_once_by_its_index():
    with pytest.raises(StackSettingsError) as error:
        load("dev", with_change("dev", "cluster.nodeGroups", ["general"]))
    assert error.value.problems == [
        "cluster.nodeGroups[0] = 'general' is invalid; allowed: a map of settings (see README)"
    ]


def _readme_rows() -> dict[str, tuple[str, str]]:
    """README "Stack settings": key -> (dev default, prod default) as written, combined rows split."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| key | dev default | prod default | allowed |") :].split("\n\n")[0].splitlines()[2:]
    rows: dict[str, tuple[str, str]] = {}
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        keys = [k.strip().strip("`").removesuffix("[]") for k in cells[0].split(" / ")]
        dev = cells[1].split(" / ") if len(keys) > 1 and " / " in cells[1] else [cells[1]] * len(keys)
        prod = (
            dev
            if cells[2] == "same"
            else cells[2].split(" / ")
            if len(keys) > 1 and " / " in cells[2]
            else [cells[2]] * len(keys)
        )
        rows.update({key: (d, p) for key, d, p in zip(keys, dev, prod)})
    return rows


def _as_written(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (tuple, list)):
        return f"`{list(value)}`".replace("'", '"')
    if isinstance(value, dict):
        return f"`{value}`"
    return f"`{value}`"


def test_readme_settings_table_lists_every_key_with_both_defaults():
    """The table is written by hand (its last column explains); this keeps its keys and defaults the models'."""
    rows = _readme_rows()
    keys = [key for key, _ in _fields()]
    assert sorted(rows) == sorted(keys), (
        f"README rows without a setting: {sorted(set(rows) - set(keys))}; "
        f"settings without a row: {sorted(set(keys) - set(rows))}"
    )
    for key, field in _fields():
        group, _, name = key.partition(".")
        for environment, written in zip(("dev", "prod"), rows[key]):
            default = DEFAULTS[environment].get(group)
            if key == "cluster.nodeGroups":
                nodes = default.node_groups[0]
                assert (
                    nodes.instance_types[0] in written
                    and f"{nodes.min_size}/{nodes.desired_size}/{nodes.max_size}" in written
                ), (key, environment, written)
            elif key == "clusterName":
                assert written == "`clinic-<stack>`"
            elif default is not None:
                value = getattr(default, next(n for n, f in type(default).model_fields.items() if f.alias == name))
                assert written == _as_written(value), f"README {key} {environment} default {written}, model {value!r}"
            elif field.is_required():
                assert written == "—", f"README {key} has no default in {environment}: write —, not {written}"
            else:
                assert written == _as_written(field.default), f"README {key} {environment}: {written}"
    node_keys = (ROOT / "README.md").read_text().split("Node group entries:")[1].split("\n\n")[0]
    for field in NodeGroupSettings.model_fields.values():
        assert f"`{field.alias}`" in node_keys, f"README node group entries do not name {field.alias}"


def test_prod_refuses_a_kubernetes_version_in_extended_support_dev_runs_it():
    import datetime

    today = datetime.date(2026, 11, 29)
    raw = with_change("prod", "cluster.kubernetesVersion", "1.33")
    with pytest.raises(StackSettingsError) as error:
        load_settings(raw, stack="prod", region="eu-west-1", today=today)
    assert (
        "cluster.kubernetesVersion = '1.33' is invalid; allowed: a version in EKS standard support in prod: "
        "Kubernetes 1.33 is in EKS extended support since 2026-07-29"
    ) in str(error.value)
    assert (
        load_settings(
            with_change("dev", "cluster.kubernetesVersion", "1.33"), stack="dev", region="eu-west-1", today=today
        ).cluster.kubernetes_version
        == "1.33"
    )
    # 1.34 is standard today and extended from the morning of 2 December.
    prod_134 = with_change("prod", "cluster.kubernetesVersion", "1.34")
    assert load_settings(prod_134, stack="prod", region="eu-west-1", today=today)
    with pytest.raises(StackSettingsError, match="1.34 is in EKS extended support since 2026-12-02"):
        load_settings(prod_134, stack="prod", region="eu-west-1", today=datetime.date(2026, 12, 2))


def test_the_default_kubernetes_version_is_in_standard_support_today():
    import datetime

    from limits.eks_support import support_status

    for environment in ("dev", "prod"):
        version = DEFAULTS[environment]["cluster"].kubernetes_version
        assert support_status(version, datetime.date(2026, 11, 29)) == "standard", environment


def test_an_api_ceiling_the_node_groups_cannot_hold_is_refused():
    raw = with_change("dev", "apps.apiMaxReplicas", 20)
    raw["database"]["instanceClass"] = "db.m7g.xlarge"  # room for the connections: only the nodes are short
    with pytest.raises(StackSettingsError) as error:
        load("dev", raw)
    message = str(error.value)
    assert "apps.apiMaxReplicas = 20 is invalid: 20 API pods at the HPA ceiling (250m CPU / 512Mi each)" in message
    assert "cluster.nodeGroups[].maxSize = [3]" in message and "apps.apiMaxReplicas of at most 6" in message
    raw["cluster"]["nodeGroups"][0]["maxSize"] = 8
    assert load("dev", raw).apps.api_max_replicas == 20, "larger node groups make room for it"


def test_a_node_instance_type_without_known_capacity_is_refused():
    raw = copy.deepcopy(committed("dev"))
    raw["cluster"]["nodeGroups"][0]["instanceTypes"] = ["c5.large"]
    with pytest.raises(
        StackSettingsError,
        match=r"cluster.nodeGroups\[0\].instanceTypes = \['c5.large'\] is "
        r"invalid; allowed: types whose capacity the stack knows: t3.large",
    ):
        load("dev", raw)


def test_prod_refuses_a_stack_without_tls():
    raw = with_change(
        "prod",
        "apps",
        {"apiReplicas": 3, "apiMaxReplicas": 12, "notifierReplicas": 2, "hostname": "clinic.example.org"},
    )
    with pytest.raises(StackSettingsError) as error:
        load("prod", raw)
    assert error.value.problems == [
        "apps.certificateArn = None is invalid; allowed: in prod, an ACM certificate ARN, or apps.hostname with "
        "apps.hostedZoneId so the program issues one (patients' data never crosses the internet unencrypted)"
    ]
    certificate = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    with_certificates = {
        **raw,
        "apps": {**raw["apps"], "certificateArn": certificate},
        "telemedicine": {"certificateArn": certificate},
    }
    assert load("prod", with_certificates).apps.certificate_arn
    assert load("dev", committed("dev")).apps.hosted_zone_id is None, "dev may stay on HTTP"


def test_a_hosted_zone_needs_the_host_name_and_a_certificate_the_albs_region():
    raw = with_change(
        "dev",
        "apps",
        {
            "hostedZoneId": "Z0123456789EXAMPLE",
            "certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        },
    )
    with pytest.raises(StackSettingsError) as error:
        load("dev", raw)
    assert error.value.problems == [
        "apps.certificateArn = 'arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b' "
        "is invalid; allowed: a certificate in aws:region (eu-west-1), where the ALB is",
        "apps.hostedZoneId = 'Z0123456789EXAMPLE' is invalid; allowed: unset unless apps.hostname is set (the record "
        "and the certificate are for that name)",
    ]


def test_the_clinics_time_zone_must_be_one_the_system_knows():
    apps = committed("dev")["apps"]
    assert load("dev", with_change("dev", "apps", {**apps, "timeZone": "America/Manaus"})).apps.time_zone == (
        "America/Manaus"
    )
    with pytest.raises(StackSettingsError) as error:
        load("dev", with_change("dev", "apps", {**apps, "timeZone": "Sao Paulo"}))
    assert error.value.problems == [
        "apps.timeZone = 'Sao Paulo' is invalid; allowed: an IANA time zone name such as America/Sao_Paulo"
    ]


def test_a_malformed_hosted_zone_id_is_refused():
    with pytest.raises(
        StackSettingsError,
        match=r"apps.hostedZoneId = 'z123' is invalid; allowed: a Route 53 hosted "
        r"zone id such as Z0123456789ABCDEFGHIJ",
    ):
        load("dev", with_change("dev", "apps", {"hostname": "clinic.example.org", "hostedZoneId": "z123"}))


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_stack_without_a_host_name_is_refused_as_its_emailed_links_would_point_at_localhost(stack):
    raw = copy.deepcopy(committed(stack))
    raw["apps"] = {k: v for k, v in raw["apps"].items() if k not in ("hostname", "hostedZoneId")}
    raw["apps"]["certificateArn"] = (
        "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    )
    raw.pop("telemedicine", None)
    with pytest.raises(StackSettingsError) as error:
        load(stack, raw)
    assert error.value.problems == [
        "apps.hostname = None is invalid; allowed: the clinic's public host name, such as clinic.example.org "
        "(required: the links the API emails, for email verification and password reset, are built on it; without "
        "it they would point at localhost)"
    ]
