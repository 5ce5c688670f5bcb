"""Dependencies run one way: stacks read config and build components' Args; components never reach back."""

import ast
import sys
from pathlib import Path

from tests.source import parse

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_components_never_import_the_stack_settings():
    for path in sorted((ROOT / "components").glob("*.py")):
        reaching_back = {m for m in imported_modules(path) if m == "stacks" or m.startswith("stacks.")}
        assert not reaching_back, f"{path.name} imports {sorted(reaching_back)}: take plain values in its Args instead"


def test_the_shared_limits_import_only_the_standard_library_and_each_other():
    """limits/ is imported by the policy pack's own venv too (no pulumi_aws, no pydantic there)."""
    for path in sorted((ROOT / "limits").glob("*.py")):
        outside = {
            m
            for m in imported_modules(path) - {"__future__"}
            if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != "limits"
        }
        assert not outside, f"limits/{path.name} imports {sorted(outside)}"
