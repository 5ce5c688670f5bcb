"""Which Kubernetes versions EKS supports, until when, and at what price: pure, no Pulumi.

EKS gives a minor version 14 months of standard support from its EKS release, then 12 months of extended support,
billed per cluster hour on top of the standard price (docs.aws.amazon.com/eks/latest/userguide/kubernetes-versions:
"Amazon EKS Kubernetes release calendar"; dates in UTC, extended billing starts at the beginning of the end day).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass


@dataclass(frozen=True)
class SupportWindow:
    standard_end: datetime.date
    """First day billed as extended support."""
    extended_end: datetime.date
    """After this day EKS upgrades the control plane by itself."""


# The EKS release calendar for the versions the stacks may run. Add a version here (and to the add-on checks) when
# EKS releases it; drop one once its extended support has ended.
EKS_SUPPORT: dict[str, SupportWindow] = {
    "1.33": SupportWindow(datetime.date(2026, 7, 29), datetime.date(2027, 7, 29)),
    "1.34": SupportWindow(datetime.date(2026, 12, 2), datetime.date(2027, 12, 2)),
    "1.35": SupportWindow(datetime.date(2027, 3, 27), datetime.date(2028, 3, 27)),
}


def support_status(version: str, today: datetime.date) -> str:
    """`standard`, `extended` (extra cost per cluster hour) or `ended` (EKS upgrades the control plane itself)."""
    window = EKS_SUPPORT[version]
    if today < window.standard_end:
        return "standard"
    return "extended" if today < window.extended_end else "ended"


def extended_support_problem(version: str, today: datetime.date) -> str | None:
    """What is wrong with running `version` today, or None while it is in standard support."""
    status = support_status(version, today)
    if status == "standard":
        return None
    window = EKS_SUPPORT[version]
    current = sorted(
        (v for v in EKS_SUPPORT if support_status(v, today) == "standard"), key=lambda v: tuple(map(int, v.split(".")))
    )
    advice = f"upgrade one minor at a time to {current[-1]}" if current else "upgrade"
    if status == "ended":
        return (
            f"Kubernetes {version} left EKS extended support on {window.extended_end}; EKS upgrades the control "
            f"plane by itself: {advice}"
        )
    return (
        f"Kubernetes {version} is in EKS extended support since {window.standard_end} (billed per cluster hour "
        f"on top of standard support, until {window.extended_end}): {advice}"
    )
