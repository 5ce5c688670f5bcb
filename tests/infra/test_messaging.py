"""Messaging: one queue per event domain, each with its own DLQ and seed 001's delivery contract."""

import pytest

from components.messaging import EVENT_DOMAINS, Messaging, MessagingArgs, QueuePolicy
from tests.infra.pulumi_mocks import evaluate

QUEUE = "aws:sqs/queue:Queue"


def queues(graph):
    all_queues = graph.of_type(QUEUE)
    main = {q.name: q for q in all_queues if not q.name.endswith("-dlq")}
    dlqs = {q.state["arn"]: q for q in all_queues if q.name.endswith("-dlq")}
    return main, dlqs


def test_every_event_domain_has_a_queue_with_its_own_dlq_after_three_receives(stack):
    main, dlqs = queues(stack)
    assert sorted(q.inputs["tags"]["clinic/event-domain"] for q in main.values()) == sorted(EVENT_DOMAINS)
    targets = []
    for name, queue in main.items():
        redrive = queue.input("redrivePolicy")
        assert redrive["maxReceiveCount"] == 3, name
        assert redrive["deadLetterTargetArn"] in dlqs, f"{name} must redrive to a DLQ"
        assert dlqs[redrive["deadLetterTargetArn"]].name == f"{name}-dlq", f"{name} must have its own DLQ"
        targets.append(redrive["deadLetterTargetArn"])
    assert len(set(targets)) == len(main), "no DLQ is shared"


def test_queue_and_dlq_settings_follow_the_seed(stack):
    main, dlqs = queues(stack)
    for name, queue in main.items():
        assert queue.inputs["visibilityTimeoutSeconds"] == 30, name
        assert queue.inputs["receiveWaitTimeSeconds"] == 20, name
    for dlq in dlqs.values():
        assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600, dlq.name


def test_every_queue_and_dlq_is_encrypted_with_the_clinics_own_rotating_key(stack):
    key = stack.one("aws:kms/key:Key", next(k.name for k in stack.of_type("aws:kms/key:Key") if "-events-" in k.name))
    assert key.inputs["enableKeyRotation"] is True, key.name
    for queue in stack.of_type(QUEUE):
        assert queue.inputs["kmsMasterKeyId"] == key.state["arn"], f"{queue.name} must use the events key"
        assert "sqsManagedSseEnabled" not in queue.inputs, f"{queue.name}: SSE-SQS and SSE-KMS exclude each other"
        assert queue.inputs["kmsDataKeyReusePeriodSeconds"] == 300, queue.name


def test_the_queue_key_is_used_only_by_the_api_to_send_and_the_consumers_to_receive(stack):
    key = next(k for k in stack.of_type("aws:kms/key:Key") if "-events-" in k.name)
    statements = {s["Sid"]: s for s in key.input("policy", "Statement")}
    assert set(statements) == {
        "AccountAdministers",
        "ApiSendsEvents",
        "NotifierReceivesEvents",
        "FileProcessorReceivesFiles",
    }
    send, receive = statements["ApiSendsEvents"], statements["NotifierReceivesEvents"]
    assert send["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"] and receive["Action"] == ["kms:Decrypt"]
    region = stack.one("aws:kms/key:Key", key.name).state["arn"].split(":")[3]
    for statement, app in ((send, "api"), (receive, "notifier")):
        assert statement["Condition"]["StringEquals"]["kms:ViaService"] == [f"sqs.{region}.amazonaws.com"]
        [role] = statement["Condition"]["ArnLike"]["aws:PrincipalArn"]
        assert role.endswith(f"-apps-{app}-role-*"), role


def test_only_its_source_queue_may_redrive_into_a_dlq(stack):
    main, dlqs = queues(stack)
    by_url = {q.state["url"]: q for q in dlqs.values()}
    allows = stack.of_type("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert len(allows) == len(dlqs)
    for allow in allows:
        dlq = by_url[allow.inputs["queueUrl"]]
        source = main[dlq.name.removesuffix("-dlq")]
        assert allow.input("redriveAllowPolicy") == {
            "redrivePermission": "byQueue",
            "sourceQueueArns": [source.state["arn"]],
        }


def test_every_queue_refuses_plain_http(stack):
    urls = {q.state["url"] for q in stack.of_type(QUEUE)}
    policies = stack.of_type("aws:sqs/queuePolicy:QueuePolicy")
    assert {p.inputs["queueUrl"] for p in policies} == urls
    for policy in policies:
        statement = policy.input("policy", "Statement")[0]
        assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_dlq_shorter_than_the_queue_retention_is_refused():
    args = MessagingArgs(policy=QueuePolicy(message_retention_seconds=14 * 86400, dlq_retention_seconds=86400))
    with pytest.raises(ValueError, match="dlq_retention_seconds = 86400 is invalid; allowed: at least"):
        evaluate(lambda: Messaging("m", args), stack="dev")


def test_a_bad_key_user_is_refused_before_anything_is_registered():
    from components.key_policy import KeyUser

    args = MessagingArgs(key_users=[KeyUser("ApiSendsEvents", ["clinic-dev-apps-api-role-*"], [])])
    with pytest.raises(ValueError, match=r"ApiSendsEvents: services = \[\] is invalid; allowed: at least one service"):
        evaluate(lambda: Messaging("m", args), stack="dev")
