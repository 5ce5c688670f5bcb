"""Email: a DKIM domain in prod, a single address in dev, TLS-only delivery, DNS records to publish."""

import pytest

from components.email import Email, EmailArgs
from tests.infra.pulumi_mocks import evaluate

IDENTITY = "aws:sesv2/emailIdentity:EmailIdentity"
CONFIG_SET = "aws:sesv2/configurationSet:ConfigurationSet"


def test_prod_sends_from_a_dkim_domain_and_exports_its_dns_records(prod):
    identity = prod.one(IDENTITY)
    assert identity.inputs["emailIdentity"] == "clinic.example.org"
    assert identity.inputs["dkimSigningAttributes"]["nextSigningKeyLength"] == "RSA_2048_BIT"
    records, _ = prod.exports["emailDnsRecords"]
    cnames = [r for r in records if r["type"] == "CNAME"]
    assert len(cnames) == 3 and all(r["name"].endswith("._domainkey.clinic.example.org") for r in cnames)
    assert {
        "type": "TXT",
        "name": "_dmarc.clinic.example.org",
        "value": "v=DMARC1; p=quarantine; adkim=s; aspf=s",
    } in records


def test_dev_verifies_a_single_address(dev):
    identity = dev.one(IDENTITY)
    assert identity.inputs["emailIdentity"] == "clinic-dev@example.org"
    assert "dkimSigningAttributes" not in identity.inputs
    assert dev.exports["emailDnsRecords"][0] == []


def test_configuration_set_requires_tls_and_suppresses_bounces(stack):
    config_set = stack.one(CONFIG_SET)
    assert config_set.inputs["deliveryOptions"]["tlsPolicy"] == "REQUIRE"
    assert sorted(config_set.inputs["suppressionOptions"]["suppressedReasons"]) == ["BOUNCE", "COMPLAINT"]
    assert stack.one(IDENTITY).inputs["configurationSetName"] == config_set.inputs["configurationSetName"]


def test_identity_arn_is_exported_for_least_privilege_send_policies(stack):
    arn, _ = stack.exports["emailIdentityArn"]
    assert arn == stack.one(IDENTITY).state["arn"] and ":identity/" in arn


def test_from_address_outside_the_domain_is_refused():
    with pytest.raises(ValueError, match="from_address = 'a@b.org' is invalid; allowed: an address at clinic.org"):
        evaluate(lambda: Email("e", EmailArgs(from_address="a@b.org", domain="clinic.org")), stack="prod")
