"""Alarms as the program wires them, for both committed stacks: on the stack's database, every DLQ and the
looked-up ALB; every alarm notifies the encrypted, TLS-only topic; thresholds follow the stack's database."""

import pulumi
import pytest

from components.alarms import (
    Alarms,
    AlarmsArgs,
    connections_threshold,
    free_storage_threshold_bytes,
    validate_alarms_args,
    validate_arn_suffix,
)
from components.clinic_apps import load_balancer_name
from limits import DB_INSTANCE_CLASSES, max_db_connections
from tests.infra.pulumi_mocks import ACCOUNT_ID, evaluate, stack_settings

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
# Independent of the module: RDS's formula, LEAST(DBInstanceClassMemory / 9531392, 5000), at 80 %.
EXPECTED_CONNECTIONS = {"dev": 0.8 * (1 * 2**30 // 9531392), "prod": 0.8 * (8 * 2**30 // 9531392)}  # 89.6, 720.8
EXPECTED_FREE_BYTES = {"dev": 2 * 2**30, "prod": 10 * 2**30}  # 10 % of 20 GiB and of 100 GiB


@pytest.fixture
def wired(stack):
    """The program's own Alarms, as __main__.py wires them, for each committed stack."""
    name = "prod" if stack.records[0].name.startswith("clinic-prod-") else "dev"
    return name, stack


def ours(graph, typ):
    component = next(r for r in graph.of_type("clinic:index:Alarms"))
    return [r for r in graph.descendants(component) if r.type == typ]


def alarms_by_role(graph):
    component = next(r for r in graph.of_type("clinic:index:Alarms"))
    return {a.name.removeprefix(f"{component.name}-"): a for a in ours(graph, ALARM)}


def test_every_dlq_of_the_program_has_its_own_alarm_at_one_message(wired):
    _, graph = wired
    dlq_names = {q.state["name"] for q in graph.of_type("aws:sqs/queue:Queue") if q.name.endswith("-dlq")}
    assert len(dlq_names) == 5
    watched = {}
    for role, alarm in alarms_by_role(graph).items():
        if role.startswith("dlq-"):
            assert alarm.inputs["metricName"] == "ApproximateNumberOfMessagesVisible", alarm.name
            assert alarm.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold", alarm.name
            assert alarm.inputs["threshold"] == 1, alarm.name
            watched[alarm.inputs["dimensions"]["QueueName"]] = alarm.name
    assert set(watched) == dlq_names, f"DLQs without an alarm: {sorted(dlq_names - set(watched))}"


def test_every_event_queue_alarms_when_its_oldest_message_waits_15_minutes(wired):
    """The file queue had no consumer and its messages expired unseen: a stalled consumer of any queue now pages."""
    _, graph = wired
    queue_names = {q.state["name"] for q in graph.of_type("aws:sqs/queue:Queue") if not q.name.endswith("-dlq")}
    assert len(queue_names) == 5
    watched = {}
    for role, alarm in alarms_by_role(graph).items():
        if role.startswith("queue-age-"):
            assert alarm.inputs["metricName"] == "ApproximateAgeOfOldestMessage", alarm.name
            assert alarm.inputs["comparisonOperator"] == "GreaterThanThreshold", alarm.name
            assert alarm.inputs["threshold"] == 900 and alarm.inputs["statistic"] == "Maximum", alarm.name
            watched[alarm.inputs["dimensions"]["QueueName"]] = alarm.name
    assert set(watched) == queue_names, f"queues without an age alarm: {sorted(queue_names - set(watched))}"


def test_every_alarm_notifies_the_topic_when_it_fires_and_when_it_clears(wired):
    _, graph = wired
    topic = ours(graph, "aws:sns/topic:Topic")[0]
    alarms = ours(graph, ALARM)
    name, _ = wired
    replication = 1 if name == "prod" else 0
    assert len(alarms) == 3 + 5 + 5 + 2 + replication, [a.name for a in alarms]
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [topic.state["arn"]], f"{alarm.name} does not notify the topic"
        assert alarm.inputs["okActions"] == [topic.state["arn"]], f"{alarm.name} does not say when it is over"
        assert alarm.inputs["treatMissingData"] in ("missing", "breaching", "notBreaching"), alarm.name


def test_missing_data_is_treated_deliberately_per_alarm(wired):
    _, graph = wired
    expected = {
        "db-cpu": "missing",
        "db-connections": "missing",
        "db-free-storage": "breaching",
        "alb-elb-5xx": "notBreaching",
        "alb-target-5xx-ratio": "notBreaching",
        "exam-replication-failed": "notBreaching",
    }
    for role, alarm in alarms_by_role(graph).items():
        want = "notBreaching" if role.startswith(("dlq-", "queue-age-")) else expected[role]
        assert alarm.inputs["treatMissingData"] == want, f"{alarm.name}: {alarm.inputs['treatMissingData']}"


def test_database_thresholds_follow_the_stacks_class_and_storage(wired):
    stack, graph = wired
    alarms = alarms_by_role(graph)
    rds = {"DBInstanceIdentifier": graph.one("aws:rds/instance:Instance").state["identifier"]}
    connections = alarms["db-connections"]
    assert connections.inputs["threshold"] == pytest.approx(EXPECTED_CONNECTIONS[stack]), connections.name
    assert connections.inputs["comparisonOperator"] == "GreaterThanThreshold", connections.name
    storage = alarms["db-free-storage"]
    assert storage.inputs["threshold"] == EXPECTED_FREE_BYTES[stack], storage.name
    assert storage.inputs["comparisonOperator"] == "LessThanThreshold", storage.name
    cpu = alarms["db-cpu"]
    assert (cpu.inputs["threshold"], cpu.inputs["comparisonOperator"]) == (80, "GreaterThanThreshold"), cpu.name
    assert cpu.inputs["period"] * cpu.inputs["evaluationPeriods"] == 15 * 60, f"{cpu.name}: 15 minutes"
    assert cpu.inputs["datapointsToAlarm"] == cpu.inputs["evaluationPeriods"], f"{cpu.name}: sustained"
    for alarm in (connections, storage, cpu):
        assert alarm.inputs["namespace"] == "AWS/RDS" and alarm.inputs["dimensions"] == rds, alarm.name


def test_alb_alarms_watch_the_alb_found_by_the_name_the_ingress_gives_it(wired):
    stack, graph = wired
    ingress = next(
        i for i in graph.of_type("kubernetes:networking.k8s.io/v1:Ingress") if i.name.endswith("apps-ingress")
    )
    name = ingress.inputs["metadata"]["annotations"]["alb.ingress.kubernetes.io/load-balancer-name"]
    assert name == load_balancer_name(f"clinic-{stack}-apps") and len(name) <= 32
    looked_up = f"app/{name}/50dc6c495c0c9188"  # what the mocks answer for aws:lb/getLoadBalancer with that name
    alarms = alarms_by_role(graph)
    elb = alarms["alb-elb-5xx"]
    assert elb.inputs["dimensions"] == {"LoadBalancer": looked_up}, elb.name
    assert elb.inputs["metricName"] == "HTTPCode_ELB_5XX_Count", elb.name
    ratio = alarms["alb-target-5xx-ratio"]
    queries = {q["id"]: q for q in ratio.inputs["metricQueries"]}
    assert {queries[q]["metric"]["metricName"] for q in ("requests", "errors")} == {
        "RequestCount",
        "HTTPCode_Target_5XX_Count",
    }, ratio.name
    for q in ("requests", "errors"):
        assert queries[q]["metric"]["dimensions"] == {"LoadBalancer": looked_up}, ratio.name
    assert [q["id"] for q in ratio.inputs["metricQueries"] if q.get("returnData")] == ["ratio"], ratio.name


def test_topic_is_encrypted_with_its_own_key_that_cloudwatch_may_use(wired):
    _, graph = wired
    topic = ours(graph, "aws:sns/topic:Topic")[0]
    key = ours(graph, "aws:kms/key:Key")[0]
    assert topic.inputs["kmsMasterKeyId"] == key.state["arn"], f"{topic.name} is not encrypted with {key.name}"
    assert key.inputs["enableKeyRotation"] is True, key.name
    statements = {s["Sid"]: s for s in key.input("policy", "Statement")}
    cloudwatch = statements["CloudWatchAlarmsPublish"]
    assert cloudwatch["Principal"] == {"Service": "cloudwatch.amazonaws.com"}, key.name
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}, key.name


def test_topic_policy_refuses_plain_http_and_admits_only_this_accounts_alarms(wired):
    _, graph = wired
    topic = ours(graph, "aws:sns/topic:Topic")[0]
    policy = ours(graph, "aws:sns/topicPolicy:TopicPolicy")[0]
    assert policy.inputs["arn"] == topic.state["arn"], policy.name
    statements = {s["Sid"]: s for s in policy.input("policy", "Statement")}
    deny = statements["DenyInsecureTransport"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}, policy.name
    allow = statements["CloudWatchAlarmsOfThisAccount"]
    assert allow["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT_ID}, policy.name


def test_each_alarm_email_gets_an_email_subscription(wired):
    stack, graph = wired
    topic = ours(graph, "aws:sns/topic:Topic")[0]
    subscriptions = ours(graph, "aws:sns/topicSubscription:TopicSubscription")
    expected = list(stack_settings(stack).observability.alarm_emails)
    assert sorted(s.inputs["endpoint"] for s in subscriptions) == sorted(expected)
    assert expected or stack == "dev", "prod must have someone to tell"
    for subscription in subscriptions:
        assert subscription.inputs["protocol"] == "email", subscription.name
        assert subscription.inputs["topic"] == topic.state["arn"], subscription.name


def _alone(suffix, **overrides):
    args = dict(
        alarm_emails=("oncall@clinic.example.org",),
        database_instance_id="db-1",
        database_instance_class="db.t4g.micro",
        database_allocated_storage_gb=20,
        dlq_names={"exam": "exam-dlq"},
        load_balancer_arn_suffix=suffix,
    )
    return AlarmsArgs(**{**args, **overrides})


def test_without_an_alb_yet_there_are_no_alb_alarms_and_the_rest_stands():
    graph = evaluate(lambda: Alarms("a", _alone("")), stack="dev")
    names = sorted(a.name for a in graph.of_type(ALARM))
    assert names == ["a-db-connections", "a-db-cpu", "a-db-free-storage", "a-dlq-exam"]


def test_an_alb_lookup_that_resolves_to_nothing_fails_the_update_naming_the_value():
    with pytest.raises(ValueError, match="load_balancer_arn_suffix = '' is invalid"):
        evaluate(lambda: Alarms("a", _alone(pulumi.Output.from_input(""))), stack="dev")


def test_max_connections_follow_rds_formula_for_the_stacks_classes():
    assert max_db_connections("db.t4g.micro") == 112
    assert max_db_connections("db.m7g.large") == 901
    assert connections_threshold("db.t4g.micro") == pytest.approx(89.6)
    assert connections_threshold("db.m7g.large") == pytest.approx(720.8)
    assert max_db_connections("db.r7g.2xlarge") == 5000, "64 GiB would allow 7209: RDS caps it"
    assert free_storage_threshold_bytes(20) == 2147483648


def test_every_class_the_settings_allow_has_a_connection_limit():
    for instance_class in DB_INSTANCE_CLASSES:
        assert 100 <= max_db_connections(instance_class) <= 5000, instance_class


@pytest.mark.parametrize("stack_name", ["dev", "prod"])
def test_the_database_enforces_the_limit_its_connection_alarm_is_computed_from(stack_name, request):
    graph = request.getfixturevalue(stack_name)
    parameters = {p["name"]: p for p in graph.one("aws:rds/parameterGroup:ParameterGroup").inputs["parameters"]}
    limit = int(parameters["max_connections"]["value"])
    assert parameters["max_connections"]["applyMethod"] == "pending-reboot", "a static parameter"
    alarm = next(a for a in graph.of_type(ALARM) if a.name.endswith("db-connections"))
    assert alarm.inputs["threshold"] == pytest.approx(0.8 * limit) == pytest.approx(EXPECTED_CONNECTIONS[stack_name])


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"alarm_emails": ("not-an-address",)}, "alarm_emails entry 'not-an-address' is invalid"),
        ({"alarm_emails": ("a@clinic.example.org", "A@clinic.example.org")}, "addresses without repeats"),
        ({"dlq_names": ["exam-dlq"]}, r"dlq_names = \['exam-dlq'\] is invalid; allowed: a mapping"),
        ({"load_balancer_arn_suffix": "my-alb"}, "load_balancer_arn_suffix = 'my-alb' is invalid"),
    ],
)
def test_bad_arguments_are_refused_naming_the_value(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate_alarms_args(_alone("", **overrides))


def test_an_unknown_instance_class_is_refused_naming_it():
    args = _alone("", database_instance_class="db.x9.huge")
    with pytest.raises(ValueError, match="database_instance_class = 'db.x9.huge' has no known memory"):
        validate_alarms_args(args)


def test_a_well_formed_arn_suffix_passes():
    assert validate_arn_suffix("app/clinic-dev-apps-alb/50dc6c495c0c9188") == "app/clinic-dev-apps-alb/50dc6c495c0c9188"


@pytest.mark.parametrize(
    "component, expected",
    [
        ("clinic-dev-apps", "clinic-dev-apps-alb"),
        ("clinic-prod-apps", "clinic-prod-apps-alb"),
    ],
)
def test_alb_name_is_the_components_name_when_it_fits(component, expected):
    assert load_balancer_name(component) == expected


def test_a_long_or_invalid_alb_name_is_shortened_with_a_hash_and_stays_distinct():
    long_a, long_b = "clinic-a-very-long-stack-name-one-apps", "clinic-a-very-long-stack-name-two-apps"
    for component in (long_a, "Clinic_QA.1-apps", "internal-tools-apps"):
        name = load_balancer_name(component)
        assert len(name) <= 32 and not name.startswith("internal-"), name
        assert all(c.isalnum() or c == "-" for c in name) and name[0] != "-" and name[-1] != "-", name
    assert load_balancer_name(long_a) != load_balancer_name(long_b)


def test_prod_pages_when_an_exam_pdf_fails_to_replicate_and_dev_has_nothing_to_watch(dev, prod):
    assert "exam-replication-failed" not in alarms_by_role(dev)
    alarm = alarms_by_role(prod)["exam-replication-failed"]
    source = prod.one("aws:s3/bucket:Bucket", "clinic-prod-exams-bucket").state["bucket"]
    replica = prod.one("aws:s3/bucket:Bucket", "clinic-prod-exams-replica").state["bucket"]
    (rule,) = prod.one("aws:s3/bucketReplicationConfig:BucketReplicationConfig").inputs["rules"]
    assert (alarm.inputs["namespace"], alarm.inputs["metricName"]) == ("AWS/S3", "OperationsFailedReplication")
    assert alarm.inputs["dimensions"] == {"SourceBucket": source, "DestinationBucket": replica, "RuleId": rule["id"]}
    assert (alarm.inputs["statistic"], alarm.inputs["threshold"]) == ("Sum", 1)
    assert alarm.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    # S3 publishes these metrics only because Replication Time Control (and with it metrics) is on.
    assert rule["destination"]["metrics"]["status"] == "Enabled"
