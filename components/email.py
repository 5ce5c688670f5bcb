"""Email: the SES v2 identity the notifier sends the clinic's emails from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class EmailArgs:
    from_address: str
    """The From address of the clinic's notifications."""
    domain: str | None = None
    """Sending domain, verified with DKIM (prod); None verifies the single from_address (dev)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for the identity and configuration set."""


def validate_email_args(args: EmailArgs) -> None:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", args.from_address):
        raise ValueError(f"from_address = {args.from_address!r} is invalid; allowed: an email address")
    if args.domain and not args.from_address.lower().endswith("@" + args.domain.lower()):
        raise ValueError(f"from_address = {args.from_address!r} is invalid; allowed: an address at {args.domain}")


def dns_records(domain: str, dkim_tokens: list[str]) -> list[dict[str, str]]:
    """The records to publish in the domain's zone: Easy DKIM CNAMEs and a DMARC policy."""
    records = [
        {"type": "CNAME", "name": f"{token}._domainkey.{domain}", "value": f"{token}.dkim.amazonses.com"}
        for token in dkim_tokens
    ]
    records.append({"type": "TXT", "name": f"_dmarc.{domain}", "value": "v=DMARC1; p=quarantine; adkim=s; aspf=s"})
    return records


class Email(pulumi.ComponentResource):
    identity_arn: pulumi.Output[str]
    """ARN of the SES identity: the only resource the notifier's `ses:SendEmail` is granted on."""
    from_address: pulumi.Output[str]
    """The From address."""
    configuration_set_name: pulumi.Output[str]
    """Configuration set every send must use (TLS required, bounces and complaints suppressed)."""
    configuration_set_arn: pulumi.Output[str]
    """ARN of the configuration set (sending through it is authorised on it too)."""
    dns_records: pulumi.Output[list[dict[str, str]]]
    """DNS records to create for the domain (empty for a single-address identity, verified by email)."""

    def __init__(self, name: str, args: EmailArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Email", name, None, opts)
        validate_email_args(args)
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)

        configuration_set = aws.sesv2.ConfigurationSet(
            f"{name}-config",
            configuration_set_name=name,
            tags=tags,
            opts=child,
            # Patients' notifications never travel in clear between SES and the receiving server.
            delivery_options={"tls_policy": "REQUIRE"},
            reputation_options={"reputation_metrics_enabled": True},
            sending_options={"sending_enabled": True},
            suppression_options={"suppressed_reasons": ["BOUNCE", "COMPLAINT"]},
        )
        identity = aws.sesv2.EmailIdentity(
            f"{name}-identity",
            email_identity=args.domain or args.from_address,
            configuration_set_name=configuration_set.configuration_set_name,
            dkim_signing_attributes={"next_signing_key_length": "RSA_2048_BIT"} if args.domain else None,
            tags=tags,
            opts=child,
        )

        self.identity_arn = identity.arn
        self.from_address = pulumi.Output.from_input(args.from_address)
        self.configuration_set_name = configuration_set.configuration_set_name
        self.configuration_set_arn = configuration_set.arn
        if args.domain:
            domain = args.domain
            self.dns_records = identity.dkim_signing_attributes.apply(
                lambda dkim: dns_records(domain, list((dkim.tokens if dkim else None) or []))
            )
        else:
            self.dns_records = pulumi.Output.from_input([])
        self.register_outputs(
            {
                "identity_arn": self.identity_arn,
                "from_address": self.from_address,
                "configuration_set_name": self.configuration_set_name,
                "configuration_set_arn": self.configuration_set_arn,
                "dns_records": self.dns_records,
            }
        )
