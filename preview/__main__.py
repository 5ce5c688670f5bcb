"""Offline preview: `python -m preview dev|prod [--json]`.

Evaluates the Pulumi program for a committed stack file under mocks — no Pulumi CLI, no credentials, nothing
created — and prints the resource tree, counts by type, the create critical path, the delete order, an estimated
monthly cost and the policy pack's findings. Exit status 0, or 2 for a stack that has no Pulumi.<stack>.yaml.
"""

from __future__ import annotations

import argparse
import json
import sys

from preview import report
from preview.graph import ROOT, evaluate_program, stack_config


def main(argv: list[str] | None = None) -> int:
    stacks = sorted(p.name.split(".")[1] for p in ROOT.glob("Pulumi.*.yaml"))
    parser = argparse.ArgumentParser(prog="python -m preview", description=__doc__.splitlines()[0])
    parser.add_argument("stack", help=f"a committed stack: {', '.join(stacks)}")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of text")
    args = parser.parse_args(argv)
    if args.stack not in stacks:
        parser.error(f"stack {args.stack!r} has no Pulumi.{args.stack}.yaml; allowed: {', '.join(stacks)}")

    config = stack_config(args.stack)
    region = config.get("aws:region", "eu-west-1")
    environment = config.get("clinic-platform:environment")
    view = report.build(evaluate_program(args.stack), args.stack, region, environment)
    sys.stdout.write(json.dumps(view, indent=2) + "\n" if args.json else report.text(view))
    return 0


if __name__ == "__main__":
    sys.exit(main())
