"""Dependencies run one way: stacks read config and build components' Args; components never reach back."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}


def test_components_never_import_the_stack_settings():
    for path in sorted((ROOT / "components").glob("*.py")):
        reaching_back = {m for m in imported_modules(path) if m in ("stacks", "stacks.settings", "stacks.component_args")}
        assert not reaching_back, f"{path.name} imports {sorted(reaching_back)}: take plain values in its Args instead"


def test_the_shared_limits_import_nothing_of_the_project_or_of_pulumi():
    """limits.py is imported by the policy pack's own venv too (no pulumi_aws, no pydantic there)."""
    assert imported_modules(ROOT / "limits.py") <= {"re"}
