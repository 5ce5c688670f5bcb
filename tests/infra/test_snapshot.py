"""What each committed stack deploys, compared with the snapshot committed beside this module.

A change to the program that changes any resource's URN, type, parent, provider, protection, dependencies or inputs
fails here until the snapshot is regenerated; the snapshot's diff in the pull request then shows reviewers exactly
what the change deploys. A refactor that deploys nothing new leaves it identical. Regenerate (and review the diff):

    /work/main/.venv/bin/python -m tests.infra.test_snapshot
"""

import difflib
import json
from pathlib import Path

import pytest

from preview.graph import GENERATED_SECRET, evaluate_program, snapshot

SNAPSHOTS = Path(__file__).parent / "snapshots"
STACKS = ("dev", "prod")


def render(stack: str) -> str:
    return json.dumps(snapshot(evaluate_program(stack)), indent=1, sort_keys=True) + "\n"


@pytest.mark.parametrize("stack", STACKS)
def test_the_program_deploys_what_the_committed_snapshot_records(stack, dev, prod):
    recorded = (SNAPSHOTS / f"{stack}.json").read_text()
    current = json.dumps(snapshot({"dev": dev, "prod": prod}[stack]), indent=1, sort_keys=True) + "\n"
    if current != recorded:
        diff = "".join(
            list(
                difflib.unified_diff(
                    recorded.splitlines(True), current.splitlines(True), f"snapshots/{stack}.json", "program"
                )
            )[:80]
        )
        pytest.fail(
            f"the {stack} graph differs from tests/infra/snapshots/{stack}.json; if the change is meant to "
            f"deploy this, run `python -m tests.infra.test_snapshot` and commit the diff:\n{diff}"
        )


@pytest.mark.parametrize("stack", STACKS)
def test_the_snapshot_holds_no_secret_and_every_resource(stack, dev, prod):
    graph = {"dev": dev, "prod": prod}[stack]
    recorded = (SNAPSHOTS / f"{stack}.json").read_text()
    assert GENERATED_SECRET not in recorded and "1b47061264138c4ac30d75fd1eb44270" not in recorded
    assert {entry["urn"] for entry in json.loads(recorded)} == {r.urn for r in graph.records}


if __name__ == "__main__":
    for name in STACKS:
        (SNAPSHOTS / f"{name}.json").write_text(render(name))
        print(f"wrote {SNAPSHOTS / name}.json")
