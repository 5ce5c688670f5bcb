"""Supply chain: hashed locks for the program, each image and the tests; Renovate keeps locks, base images, actions
and Helm charts current (its config is checked against the files it must find)."""

import ast
import json
import re
from fnmatch import fnmatch

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from preview.graph import ROOT
from tests.source import parse

# lock -> the input it is compiled from
LOCKS = {
    "requirements.txt": "requirements.in",
    "apps/clinic_api/requirements.txt": "apps/clinic_api/requirements.in",
    "apps/notifier/requirements.txt": "apps/notifier/requirements.in",
    "apps/file_processor/requirements.txt": "apps/file_processor/requirements.in",
    "requirements-dev.txt": "requirements-dev.in",
    "policy/requirements.txt": "policy/requirements.in",
}
RENOVATE = json.loads((ROOT / ".github" / "renovate.json").read_text())


def entries(lock: str) -> list[tuple[str, str, list[str]]]:
    """(name, pinned version, hashes) per entry of a lock; continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / lock).read_text())
    found: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        requirement, *hashes = line.split(" --hash=")
        name, _, version = requirement.split(";")[0].strip().partition("==")
        assert version, f"{lock}: {requirement!r} is not pinned with =="
        found.append((canonicalize_name(name.split("[")[0]), version.strip(), hashes))
    return found


def requirements(path: str) -> list[Requirement]:
    """The requirements of an input file, following `-r` includes."""
    out = []
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            out += requirements(line[3:].strip())
        elif line:
            out.append(Requirement(line))
    return out


def js_regex(pattern: str) -> re.Pattern:
    """A Renovate pattern (`/.../` or a plain regex with JavaScript named groups) as a Python regex."""
    body = pattern[1:-1] if pattern.startswith("/") and pattern.endswith("/") else pattern
    return re.compile(body.replace("(?<", "(?P<"))


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_entry_is_pinned_and_hashed(lock):
    found = entries(lock)
    assert len(found) > 5, lock
    for name, _version, hashes in found:
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h.strip()) for h in hashes), f"{lock}: {name}"


@pytest.mark.parametrize("lock", LOCKS)
def test_every_lock_covers_its_input_and_records_how_to_regenerate_it(lock):
    source = LOCKS[lock]
    pinned: dict[str, list[str]] = {}
    for name, version, _ in entries(lock):
        pinned.setdefault(name, []).append(version)
    for requirement in requirements(source):
        versions = pinned.get(canonicalize_name(requirement.name), [])
        assert any(requirement.specifier.contains(v, prereleases=True) for v in versions), (
            f"{lock} does not pin {requirement} (has {versions}): re-run the command in its header"
        )
    # Renovate and people re-run the header's command: it must name this lock and its input, with hashes.
    command = (ROOT / lock).read_text().splitlines()[1].lstrip("# ").split()
    assert command[:3] == ["uv", "pip", "compile"] and "--generate-hashes" in command, command
    assert command[command.index("--output-file") + 1] == lock and command[-1] == source, command
    assert command[command.index("--python-version") + 1] == "3.11", "the images and CI run Python 3.11"


def test_the_dev_lock_pins_exactly_what_the_program_and_the_images_run():
    dev = {name: version for name, version, _ in entries("requirements-dev.txt")}
    for lock in (
        "requirements.txt",
        "apps/clinic_api/requirements.txt",
        "apps/notifier/requirements.txt",
        "apps/file_processor/requirements.txt",
    ):
        for name, version, _ in entries(lock):
            assert dev.get(name) == version, f"{lock} pins {name}=={version}, requirements-dev.txt {dev.get(name)}"


def test_renovate_updates_every_lock_and_leaves_them_to_the_pip_compile_manager():
    patterns = [js_regex(p) for p in RENOVATE["pip-compile"]["managerFilePatterns"]]
    for lock in LOCKS:
        assert any(p.search(lock) for p in patterns), f"no pip-compile pattern matches {lock}"
    [off] = [r for r in RENOVATE["packageRules"] if r.get("matchManagers") == ["pip_requirements"]]
    assert off["enabled"] is False
    for lock in LOCKS:
        assert any(fnmatch(lock, glob) for glob in off["matchFileNames"]), (
            f"Renovate's plain pip manager may edit {lock}"
        )
    assert RENOVATE["lockFileMaintenance"]["enabled"] is True, "transitive pins need refreshing too"


def test_renovate_follows_base_image_digests_but_not_a_new_python_minor():
    [rule] = [r for r in RENOVATE["packageRules"] if r.get("matchDepNames") == ["python"]]
    assert rule["matchUpdateTypes"] == ["major", "minor"] and rule["enabled"] is False
    assert "helpers:pinGitHubActionDigests" in RENOVATE["extends"]


def chart_pins() -> dict[str, tuple[str, str, str]]:
    """Per module that installs a Helm chart: (chart, repository, version) as its helm.v3.Release call gets them,
    constants resolved."""
    pins = {}
    for module in sorted((ROOT / "components").glob("*.py")):
        tree = parse(module.read_text())
        constants = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign)
            for t in n.targets
            if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
        }

        def value(node: ast.AST) -> str:
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return node.value
            assert isinstance(node, ast.Name), f"{module.name}: {ast.unparse(node)} is not a string or a constant"
            return constants[node.id]

        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("helm.v3.Release"):
                keywords = {k.arg: k.value for k in node.keywords}
                repository_opts = keywords["repository_opts"]
                assert isinstance(repository_opts, ast.Dict), f"{module.name}: repository_opts is not a dict literal"
                repo = dict(zip([value(k) for k in repository_opts.keys if k is not None], repository_opts.values))[
                    "repo"
                ]
                pins[module.name] = (value(keywords["chart"]), value(repo), value(keywords["version"]))
    return pins


def test_renovate_finds_every_helm_chart_the_components_install():
    [manager] = RENOVATE["customManagers"]
    files = js_regex(manager["managerFilePatterns"][0])
    [pattern] = [js_regex(p) for p in manager["matchStrings"]]
    pins = chart_pins()
    assert set(pins) >= {"lb_controller.py", "monitoring.py", "scaling.py"}, pins
    for module, (chart, repository, version) in pins.items():
        assert files.search(f"components/{module}"), module
        matches = [m.groupdict() for m in pattern.finditer((ROOT / "components" / module).read_text())]
        assert matches == [
            {"datasource": "helm", "depName": chart, "registryUrl": repository, "currentValue": version}
        ], f"{module}: add `# renovate: datasource=helm ...` above the chart's version constant"


def test_pre_commit_runs_the_ruff_the_dev_lock_pins():
    """The hook repository's rev and the lock's pin move together, or commits and CI format differently."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    [ruff_hooks] = [repo for repo in config["repos"] if repo["repo"].endswith("/ruff-pre-commit")]
    pinned = {name: version for name, version, _ in entries("requirements-dev.txt")}
    assert ruff_hooks["rev"] == f"v{pinned['ruff']}", f"pre-commit ruff {ruff_hooks['rev']}, lock {pinned['ruff']}"
    assert {hook["id"] for hook in ruff_hooks["hooks"]} == {"ruff-check", "ruff-format"}
