"""Messaging: one SQS queue per domain of the clinic's events, each with its own dead-letter queue, all encrypted with
the clinic's own key (messages carry patients' names and email addresses)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.key_policy import KeyUser, account_context, key_policy, validate_key_users

# The domains whose events the apps publish (seed 001): account.* / patient.registered / doctor.registered,
# appointment.*, exam.created / exam.completed, exam.result.ready, file.*.
EVENT_DOMAINS: tuple[str, ...] = ("account", "appointment", "exam", "exam-result", "file")
DAY = 24 * 60 * 60
# How long SQS reuses a data key before asking KMS again (SQS's default): one GenerateDataKey/Decrypt per producer
# or consumer every 5 minutes, not per message. Longer saves KMS requests, shorter limits what one data key covers.
DATA_KEY_REUSE_SECONDS = 300


@dataclass(frozen=True)
class QueuePolicy:
    """The delivery contract every queue shares (seed 001's failure and queue settings)."""

    max_receive_count: int = 3
    """Receives before a message is moved to the DLQ."""
    visibility_timeout_seconds: int = 30
    """Time a consumer has to process a received message."""
    receive_wait_time_seconds: int = 20
    """Long polling."""
    message_retention_seconds: int = 4 * DAY
    """Retention in the main queue."""
    dlq_retention_seconds: int = 14 * DAY
    """Retention in the DLQ: two weeks to inspect and redrive."""


@dataclass(frozen=True)
class MessagingArgs:
    domains: Sequence[str] = EVENT_DOMAINS
    """Event domains; one queue and one DLQ each."""
    policy: QueuePolicy = QueuePolicy()
    """Delivery settings shared by all queues."""
    key_users: Sequence[KeyUser] = ()
    """Who may use the queues' key, through SQS (the producer and the consumer); the key policy names nobody else."""
    retain_key: bool = False
    """Prod: a longer deletion window for the key (messages in flight at a destroy stay readable for 30 days)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every queue."""


def validate_messaging_args(args: MessagingArgs) -> None:
    p = args.policy
    validate_key_users(args.key_users)
    if len(set(args.domains)) != len(args.domains) or not args.domains:
        raise ValueError(f"domains = {list(args.domains)} is invalid; allowed: a non-empty list without repeats")
    if not 1 <= p.max_receive_count <= 1000:
        raise ValueError(f"max_receive_count = {p.max_receive_count} is invalid; allowed: 1 to 1000")
    if not 0 <= p.receive_wait_time_seconds <= 20:
        raise ValueError(f"receive_wait_time_seconds = {p.receive_wait_time_seconds} is invalid; allowed: 0 to 20")
    if p.dlq_retention_seconds < p.message_retention_seconds:
        # SQS keeps a message's original enqueue time on redrive: a shorter DLQ retention silently drops it.
        raise ValueError(
            f"dlq_retention_seconds = {p.dlq_retention_seconds} is invalid; allowed: at least "
            f"message_retention_seconds ({p.message_retention_seconds})"
        )


def tls_only_policy(queue_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "sqs:*",
                    "Resource": queue_arn,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class Messaging(pulumi.ComponentResource):
    queue_urls: pulumi.Output[dict[str, str]]
    """Queue URL per event domain."""
    queue_arns: pulumi.Output[dict[str, str]]
    """Queue ARN per event domain."""
    dlq_urls: pulumi.Output[dict[str, str]]
    """Dead-letter queue URL per event domain."""
    dlq_arns: pulumi.Output[dict[str, str]]
    """Dead-letter queue ARN per event domain."""
    queue_names: dict[str, pulumi.Output[str]]
    """Queue name per event domain (the CloudWatch `QueueName` dimension), a plain dict as dlq_names is."""
    kms_key_arn: pulumi.Output[str]
    """Key encrypting every queue and DLQ: producers need kms:GenerateDataKey and kms:Decrypt, consumers
    kms:Decrypt."""
    dlq_names: dict[str, pulumi.Output[str]]
    """Dead-letter queue name per event domain (the CloudWatch `QueueName` dimension). A plain dict, unlike its
    siblings: its keys are known when the program runs, so a consumer creates one resource per DLQ (an alarm) that
    shows in preview, never resources inside an `apply`."""

    def __init__(self, name: str, args: MessagingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Messaging", name, None, opts)
        validate_messaging_args(args)
        p = args.policy
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        # One key for every queue and DLQ: SQS moves a dead letter between them, and an operator redriving it
        # back needs the same key on both ends.
        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: event queues and dead-letter queues",
            enable_key_rotation=True,
            deletion_window_in_days=30 if args.retain_key else 7,
            policy=account_context(self).apply(lambda c: key_policy(*c, users=args.key_users)),
            tags=tags,
            opts=child,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}", target_key_id=key.key_id, opts=child)
        queues: dict[str, aws.sqs.Queue] = {}
        dlqs: dict[str, aws.sqs.Queue] = {}
        for domain in args.domains:
            dlq = aws.sqs.Queue(
                f"{name}-{domain}-dlq",
                message_retention_seconds=p.dlq_retention_seconds,
                kms_master_key_id=key.arn,
                kms_data_key_reuse_period_seconds=DATA_KEY_REUSE_SECONDS,
                tags={**tags, "clinic/role": "dlq"},
                opts=child,
            )
            queue = aws.sqs.Queue(
                f"{name}-{domain}",
                visibility_timeout_seconds=p.visibility_timeout_seconds,
                receive_wait_time_seconds=p.receive_wait_time_seconds,
                message_retention_seconds=p.message_retention_seconds,
                kms_master_key_id=key.arn,
                kms_data_key_reuse_period_seconds=DATA_KEY_REUSE_SECONDS,
                redrive_policy=dlq.arn.apply(
                    lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": p.max_receive_count})
                ),
                tags={**tags, "clinic/event-domain": domain},
                opts=child,
            )
            # Only this queue may move messages into its DLQ.
            aws.sqs.RedriveAllowPolicy(
                f"{name}-{domain}-dlq-allow",
                queue_url=dlq.url,
                opts=child,
                redrive_allow_policy=queue.arn.apply(
                    lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
                ),
            )
            for q, role in ((queue, domain), (dlq, f"{domain}-dlq")):
                aws.sqs.QueuePolicy(
                    f"{name}-{role}-tls-only", queue_url=q.url, policy=q.arn.apply(tls_only_policy), opts=child
                )
            queues[domain], dlqs[domain] = queue, dlq

        def by_domain(items: dict[str, aws.sqs.Queue], attr: str) -> pulumi.Output[dict[str, str]]:
            return pulumi.Output.all(**{d: getattr(q, attr) for d, q in items.items()})

        self.queue_urls = by_domain(queues, "url")
        self.queue_arns = by_domain(queues, "arn")
        self.dlq_urls = by_domain(dlqs, "url")
        self.dlq_arns = by_domain(dlqs, "arn")
        self.queue_names = {domain: queue.name for domain, queue in queues.items()}
        self.dlq_names = {domain: dlq.name for domain, dlq in dlqs.items()}
        self.kms_key_arn = key.arn
        self.register_outputs(
            {
                "queue_urls": self.queue_urls,
                "queue_arns": self.queue_arns,
                "dlq_urls": self.dlq_urls,
                "dlq_arns": self.dlq_arns,
                "queue_names": self.queue_names,
                "dlq_names": self.dlq_names,
                "kms_key_arn": self.kms_key_arn,
            }
        )
