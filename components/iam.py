"""IAM documents several components need (a helper module, not a component)."""

from __future__ import annotations

import json


def service_trust_policy(service: str) -> str:
    """A role only the AWS service `service` (e.g. `ec2.amazonaws.com`) may assume."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": service}}],
        }
    )
