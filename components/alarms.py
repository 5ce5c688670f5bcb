"""Alarms: CloudWatch alarms on the database, the event queues and their dead-letter queues, and the clinic's ALB,
sent by email through an encrypted SNS topic that Alertmanager may publish to as well."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from components.key_policy import KeyUser, ServiceUser, key_policy, validate_key_users
from limits import DB_CONNECTIONS_ALARM_FRACTION, DB_INSTANCE_CLASS_MEMORY_GIB, EMAIL_PATTERN, max_db_connections

GIB = 1024**3

CPU_PERCENT = 80
FREE_STORAGE_FRACTION = 0.10
# The ALB's own 5xx (no healthy target, target timeout): none is expected, ten in five minutes is an outage.
ELB_5XX_PER_5_MIN = 10
# Share of requests the API answers with a 5xx, judged only over enough traffic to mean something.
TARGET_5XX_PERCENT = 5
TARGET_5XX_MIN_REQUESTS = 20
FIVE_MINUTES = 300
# Every event queue has a consumer that takes a message within seconds (the notifier, the file processor): one still
# there after 15 minutes means its consumer is down or failing, long before the queue's retention drops it.
QUEUE_AGE_SECONDS = 15 * 60

_EMAIL = re.compile(EMAIL_PATTERN)
_ARN_SUFFIX = re.compile(r"app/[A-Za-z0-9-]{1,32}/[0-9a-f]{16}")


@dataclass(frozen=True)
class ReplicationWatch:
    """An S3 replication rule whose failures page someone (S3 publishes its metrics with Replication Time Control)."""

    source_bucket: pulumi.Input[str]
    """Name of the replicated bucket."""
    destination_bucket: pulumi.Input[str]
    """Name of the replica bucket."""
    rule_id: str
    """Id of the replication rule."""


@dataclass(frozen=True)
class AlarmsArgs:
    alarm_emails: Sequence[str]
    """Addresses subscribed to the alarm topic by email (each confirms once)."""
    database_instance_id: pulumi.Input[str]
    """DBInstanceIdentifier of the RDS instance the database alarms watch."""
    database_instance_class: str
    """The database's class: the connections threshold is a share of its max_connections."""
    database_allocated_storage_gb: int
    """The database's allocated storage: the free-storage threshold is a share of it."""
    dlq_names: Mapping[str, pulumi.Input[str]]
    """Dead-letter queue name per event domain; a mapping known when the program runs (values may be outputs)."""
    load_balancer_arn_suffix: pulumi.Input[str]
    """`app/<name>/<id>` of the clinic ALB; a plain "" means no ALB yet, and no ALB alarms."""
    queue_names: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    """Event queue name per domain, known when the program runs like dlq_names: each gets an age alarm."""
    exam_replication: ReplicationWatch | None = None
    """The exam bucket's replication rule to watch (prod); None: no replica, no alarm."""
    topic_key_users: Sequence[KeyUser] = ()
    """Who besides CloudWatch may use the topic's key (Alertmanager's role, publishing through SNS)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def connections_threshold(instance_class: str) -> float:
    return DB_CONNECTIONS_ALARM_FRACTION * max_db_connections(instance_class)


def free_storage_threshold_bytes(allocated_storage_gb: int) -> int:
    """10 % of the allocated storage (RDS allocates GiB; FreeStorageSpace is in bytes)."""
    return int(allocated_storage_gb * GIB * FREE_STORAGE_FRACTION)


def validate_arn_suffix(value: str) -> str:
    if not _ARN_SUFFIX.fullmatch(value):
        raise ValueError(
            f"load_balancer_arn_suffix = {value!r} is invalid; allowed: app/<name>/<16 hex digits> "
            "(the clinic ALB was not found: is the Ingress reconciled by the controller?)"
        )
    return value


def validate_alarms_args(args: AlarmsArgs) -> None:
    validate_key_users(args.topic_key_users)
    lowered = [address.lower() for address in args.alarm_emails]
    for address in args.alarm_emails:
        if not isinstance(address, str) or not _EMAIL.fullmatch(address):
            raise ValueError(f"alarm_emails entry {address!r} is invalid; allowed: an email address")
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"alarm_emails = {list(args.alarm_emails)} is invalid; allowed: addresses without repeats")
    instance_class = args.database_instance_class
    if instance_class not in DB_INSTANCE_CLASS_MEMORY_GIB:
        raise ValueError(
            f"database_instance_class = {instance_class!r} has no known memory; allowed: "
            + ", ".join(DB_INSTANCE_CLASS_MEMORY_GIB)
        )
    if args.database_allocated_storage_gb <= 0:
        raise ValueError(
            f"database_allocated_storage_gb = {args.database_allocated_storage_gb} is invalid; "
            "allowed: a positive number of GiB"
        )
    if not isinstance(args.queue_names, Mapping):
        raise ValueError(
            f"queue_names = {args.queue_names!r} is invalid; allowed: a mapping of domain to queue name "
            "whose keys are known when the program runs (Messaging.queue_names)"
        )
    if not isinstance(args.dlq_names, Mapping):
        # An Output of a mapping would leave the alarms to be created inside an apply: invisible in preview.
        raise ValueError(
            f"dlq_names = {args.dlq_names!r} is invalid; allowed: a mapping of domain to queue name "
            "whose keys are known when the program runs (Messaging.dlq_names)"
        )
    suffix = args.load_balancer_arn_suffix
    if isinstance(suffix, str) and suffix:
        validate_arn_suffix(suffix)


def topic_key_policy(account_id: str, partition: str, region: str, users: Sequence[KeyUser] = ()) -> str:
    """The account administers the key; CloudWatch encrypts the notifications its alarms publish to the topic, and
    `users` (Alertmanager's role) publish through SNS."""
    cloudwatch = ServiceUser(
        "CloudWatchAlarmsPublish", "cloudwatch.amazonaws.com", ["kms:Decrypt", "kms:GenerateDataKey*"]
    )
    return key_policy(account_id, partition, region, users=users, services=[cloudwatch])


def topic_policy(topic_arn: str, account_id: str, region: str, partition: str) -> str:
    """Only this account's alarms publish as CloudWatch (no confused deputy), and nothing over plain HTTP."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CloudWatchAlarmsOfThisAccount",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {
                        "StringEquals": {"aws:SourceAccount": account_id},
                        "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:*"},
                    },
                },
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
        }
    )


def _subscription_role(address: str) -> str:
    """A stable child name per address, so reordering the list never re-subscribes anyone."""
    return re.sub(r"[^a-z0-9]+", "-", address.lower()).strip("-")


class Alarms(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    """The alarm topic (alarms and Alertmanager publish here; subscribers get email)."""
    topic_key_arn: pulumi.Output[str]
    """Key encrypting the topic: a publisher needs kms:GenerateDataKey and kms:Decrypt on it."""

    def __init__(self, name: str, args: AlarmsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Alarms", name, None, opts)
        validate_alarms_args(args)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOutputOptions(parent=self)
        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke).partition
        region = aws.get_region_output(opts=invoke).region

        key = aws.kms.Key(
            f"{name}-topic-key",
            description=f"{name}: alarm notifications",
            enable_key_rotation=True,
            policy=pulumi.Output.all(account_id, partition, region).apply(
                lambda a: topic_key_policy(a[0], a[1], a[2], users=args.topic_key_users)
            ),
            tags=tags,
            opts=child,
        )
        aws.kms.Alias(f"{name}-topic-key-alias", name=f"alias/{name}-topic", target_key_id=key.key_id, opts=child)
        topic = aws.sns.Topic(f"{name}-topic", kms_master_key_id=key.arn, tags=tags, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-topic-policy",
            arn=topic.arn,
            opts=pulumi.ResourceOptions(parent=topic),
            policy=pulumi.Output.all(topic.arn, account_id, region, partition).apply(lambda a: topic_policy(*a)),
        )
        for address in args.alarm_emails:
            aws.sns.TopicSubscription(
                f"{name}-email-{_subscription_role(address)}",
                topic=topic.arn,
                protocol="email",
                endpoint=address,
                opts=pulumi.ResourceOptions(parent=topic),
            )

        def alarm(role: str, description: str, treat_missing_data: str, **metric: Any) -> aws.cloudwatch.MetricAlarm:
            # OK actions too: whoever was paged learns when it is over without opening the console.
            return aws.cloudwatch.MetricAlarm(
                f"{name}-{role}",
                alarm_description=description,
                treat_missing_data=treat_missing_data,
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
                tags=tags,
                opts=child,
                **metric,
            )

        rds = {"DBInstanceIdentifier": args.database_instance_id}
        instance_class, allocated_gb = args.database_instance_class, args.database_allocated_storage_gb
        # A gap in CPU or connection data says nothing about load: keep the state; the storage alarm below is the
        # one that treats silence as an outage.
        alarm(
            "db-cpu",
            f"RDS CPU above {CPU_PERCENT} % for 15 minutes: look at slow statements and Performance "
            "Insights before scaling the class.",
            "missing",
            namespace="AWS/RDS",
            metric_name="CPUUtilization",
            dimensions=rds,
            statistic="Average",
            period=FIVE_MINUTES,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            comparison_operator="GreaterThanThreshold",
            threshold=CPU_PERCENT,
        )
        storage_bytes = free_storage_threshold_bytes(allocated_gb)
        # RDS reports FreeStorageSpace every minute while the instance runs: silence means it is stopped, gone or
        # replaced (a restore under another identifier), and someone must look.
        alarm(
            "db-free-storage",
            f"RDS free storage below 10 % of the allocated {allocated_gb} GiB: "
            "storage autoscaling acts at this mark too; if it does not (maxAllocatedStorage "
            "reached, or 6 h since the last change), raise the ceiling.",
            "breaching",
            namespace="AWS/RDS",
            metric_name="FreeStorageSpace",
            dimensions=rds,
            statistic="Minimum",
            period=FIVE_MINUTES,
            evaluation_periods=2,
            datapoints_to_alarm=2,
            comparison_operator="LessThanThreshold",
            threshold=storage_bytes,
        )
        max_connections = max_db_connections(instance_class)
        alarm(
            "db-connections",
            f"RDS connections above {DB_CONNECTIONS_ALARM_FRACTION:.0%} of max_connections "
            f"({max_connections}, set in the parameter group) for 5 minutes: look for a connection "
            "leak, or pools that together (replicas x pool size) outgrow the instance.",
            "missing",
            namespace="AWS/RDS",
            metric_name="DatabaseConnections",
            dimensions=rds,
            statistic="Maximum",
            period=60,
            evaluation_periods=5,
            datapoints_to_alarm=5,
            comparison_operator="GreaterThanThreshold",
            threshold=connections_threshold(instance_class),
        )

        for domain, queue_name in sorted(args.dlq_names.items()):
            # SQS stops publishing metrics of a queue idle for hours: no data from an empty DLQ is no message.
            alarm(
                f"dlq-{domain}",
                f"A {domain} event was dead-lettered after its retries: inspect it, fix the "
                "cause, then redrive it before the DLQ's retention ends.",
                "notBreaching",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": queue_name},
                statistic="Maximum",
                period=FIVE_MINUTES,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
            )

        for domain, queue_name in sorted(args.queue_names.items()):
            # An idle queue publishes no age (or 0): silence is no stalled consumer.
            alarm(
                f"queue-age-{domain}",
                f"A {domain} event has waited over {QUEUE_AGE_SECONDS // 60} minutes: its consumer is down or "
                "failing (kubectl -n clinic get pods; its logs say why). Messages expire after the queue's retention.",
                "notBreaching",
                namespace="AWS/SQS",
                metric_name="ApproximateAgeOfOldestMessage",
                dimensions={"QueueName": queue_name},
                statistic="Maximum",
                period=FIVE_MINUTES,
                evaluation_periods=1,
                comparison_operator="GreaterThanThreshold",
                threshold=QUEUE_AGE_SECONDS,
            )

        watch = args.exam_replication
        if watch is not None:
            # Published only while something replicates: no data is no failure. One failed operation is a PDF that
            # exists in one region only (a key policy or a bucket policy refusing the replication role, usually).
            alarm(
                "exam-replication-failed",
                "An exam PDF failed to replicate to the second region: check the replica key's and the exam key's "
                "policies for the replication role, then re-replicate the object (S3 Batch Replication).",
                "notBreaching",
                namespace="AWS/S3",
                metric_name="OperationsFailedReplication",
                dimensions={
                    "SourceBucket": watch.source_bucket,
                    "DestinationBucket": watch.destination_bucket,
                    "RuleId": watch.rule_id,
                },
                statistic="Sum",
                period=FIVE_MINUTES,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=1,
            )

        suffix = args.load_balancer_arn_suffix
        if not (isinstance(suffix, str) and not suffix):
            alb = {"LoadBalancer": pulumi.Output.from_input(suffix).apply(validate_arn_suffix)}
            # The ALB publishes its 5xx counts only when there are some, and RequestCount only with traffic.
            alarm(
                "alb-elb-5xx",
                f"The ALB itself answered 5xx (no healthy API pod, or a timeout) at least "
                f"{ELB_5XX_PER_5_MIN} times in 5 minutes.",
                "notBreaching",
                namespace="AWS/ApplicationELB",
                metric_name="HTTPCode_ELB_5XX_Count",
                dimensions=alb,
                statistic="Sum",
                period=FIVE_MINUTES,
                evaluation_periods=1,
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=ELB_5XX_PER_5_MIN,
            )

            def metric(metric_name: str) -> dict[str, Any]:
                return {
                    "namespace": "AWS/ApplicationELB",
                    "metric_name": metric_name,
                    "dimensions": alb,
                    "stat": "Sum",
                    "period": FIVE_MINUTES,
                }

            alarm(
                "alb-target-5xx-ratio",
                f"More than {TARGET_5XX_PERCENT} % of API requests answered 5xx in 2 of "
                "the last 3 five-minute periods (periods under "
                f"{TARGET_5XX_MIN_REQUESTS} requests count as healthy).",
                "notBreaching",
                metric_queries=[
                    {"id": "requests", "metric": metric("RequestCount"), "return_data": False},
                    {"id": "errors", "metric": metric("HTTPCode_Target_5XX_Count"), "return_data": False},
                    {
                        "id": "ratio",
                        "label": "API 5xx (% of requests)",
                        "return_data": True,
                        "expression": f"IF(requests >= {TARGET_5XX_MIN_REQUESTS}, 100 * FILL(errors, 0) / requests, 0)",
                    },
                ],
                evaluation_periods=3,
                datapoints_to_alarm=2,
                comparison_operator="GreaterThanThreshold",
                threshold=TARGET_5XX_PERCENT,
            )

        self.topic_arn = topic.arn
        self.topic_key_arn = key.arn
        self.register_outputs({"topic_arn": self.topic_arn, "topic_key_arn": self.topic_key_arn})
