"""Static checks of the app images' Dockerfiles (no Docker engine here): build context is apps/."""

import ast
import fnmatch
import importlib.metadata
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from tests.source import parse

APPS = Path(__file__).resolve().parents[2] / "apps"
IMAGES = {"clinic_api": 8000, "notifier": 8080, "file_processor": 8080}
APP_UID = 10001  # components/clinic_apps.py runs the pods as this uid


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, f"{path}: dangling line continuation"
    return out


def stages(instrs):
    result = []
    for keyword, args in instrs:
        if keyword == "FROM":
            result.append([])
        assert result, "instruction before FROM"
        result[-1].append((keyword, args))
    return result


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"not in exec form: {args}"
    return json.loads(args)


def dockerignore() -> list[str]:
    lines = (APPS / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(rel: str) -> bool:
    for pattern in dockerignore():
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(rel, pattern) or any(fnmatch.fnmatch(part, bare) for part in Path(rel).parts):
            return True
    return False


@pytest.fixture(params=sorted(IMAGES))
def app(request):
    return request.param


@pytest.fixture
def dockerfile(app):
    return instructions(APPS / app / "Dockerfile")


def test_multi_stage_with_a_slim_base_pinned_by_digest(dockerfile):
    froms = [args for keyword, args in dockerfile if keyword == "FROM"]
    assert len(froms) >= 2, "single-stage build"
    for args in froms:
        image = args.split()[0]
        # The tag says what it is (and what Renovate follows), the digest fixes the bytes.
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-bookworm)?@sha256:[0-9a-f]{64}", image), (
            f"base {image} is not python:3.11-slim pinned by minor and by digest"
        )
    assert froms[-1].split()[0] == froms[0].split()[0], "build and runtime stages on different bases"


def test_no_frontend_image_is_pulled_unpinned(app):
    """A `# syntax=` directive makes BuildKit pull that frontend image: only by digest, if at all."""
    for line in (APPS / app / "Dockerfile").read_text().splitlines():
        if re.match(r"#\s*syntax\s*=", line):
            assert re.search(r"@sha256:[0-9a-f]{64}\s*$", line), f"{app}: {line} is not pinned by digest"


def test_pip_installs_only_the_hashed_lock(app, dockerfile):
    build = stages(dockerfile)[0]
    copies = [shlex.split(a) for k, a in build if k == "COPY"]
    assert [f"{app}/requirements.txt", "/tmp/requirements.txt"] in copies, f"{app}: the lock is not copied"
    installs = [a for k, a in build if k == "RUN" and "pip install" in a]
    assert len(installs) == 1, installs
    words = shlex.split(installs[0].split("pip install", 1)[1].split("&&")[0])
    assert "--require-hashes" in words and "--only-binary=:all:" in words, words
    # Nothing but the lock: a package named on the command line would be installed unchecked.
    assert [w for w in words if not w.startswith("--")] == ["-r", "/tmp/requirements.txt"], words


def test_final_stage_runs_as_numeric_non_root_user(dockerfile):
    final = stages(dockerfile)[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "final stage has no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) == APP_UID, f"USER {users[-1]} is not the numeric uid {APP_UID}"
    assert not gid or (gid.isdigit() and int(gid) != 0), f"USER {users[-1]} has root group"
    # Nothing after USER may need root, and the code copied before it stays root-owned (read-only to the app).
    after = final[[k for k, _ in final].index("USER") :]
    assert not [a for k, a in after if k in ("RUN", "COPY")], "RUN or COPY after USER"
    assert not [a for k, a in final if k == "COPY" and "--chown" in a], "app code owned by the app user"


def test_final_stage_has_no_build_tools_or_installs(dockerfile):
    final = " ".join(args for keyword, args in stages(dockerfile)[-1] if keyword == "RUN")
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "pip install", "make "):
        assert tool not in final, f"final stage runs {tool!r}"


def test_no_remote_add(dockerfile):
    for keyword, args in dockerfile:
        assert not (keyword == "ADD" and re.search(r"https?://", args)), f"ADD from the network: {args}"
    assert not [args for keyword, args in dockerfile if keyword == "ADD"], "use COPY"


def test_healthcheck_calls_the_real_health_endpoint(app, dockerfile):
    checks = [args for keyword, args in stages(dockerfile)[-1] if keyword == "HEALTHCHECK"]
    assert len(checks) == 1, "final stage needs exactly one HEALTHCHECK"
    cmd = exec_form(checks[0][checks[0].index("CMD") + 3 :].strip())
    assert cmd[:2] == ["python", "-c"], "health check must use the image's python (no curl in slim)"
    parse(cmd[2])
    assert "urllib.request" in cmd[2] and "/healthz" in cmd[2]
    assert str(IMAGES[app]) in cmd[2]
    exposed = [args for keyword, args in dockerfile if keyword == "EXPOSE"]
    assert exposed == [str(IMAGES[app])], f"EXPOSE {exposed} != {IMAGES[app]}"


def test_cmd_never_runs_migrations(app, dockerfile):
    final = stages(dockerfile)[-1]
    assert not [a for k, a in final if k == "ENTRYPOINT"], "ENTRYPOINT would wrap every command, Job included"
    cmds = [exec_form(a) for k, a in final if k == "CMD"]
    assert len(cmds) == 1
    cmd = cmds[0]
    assert not any("migrat" in part or "alembic" in part for part in cmd), f"CMD runs migrations: {cmd}"
    if app == "clinic_api":
        assert cmd[0] == "uvicorn" and "--factory" in cmd and "clinic_api.main:create_app" in cmd
        assert cmd[cmd.index("--port") + 1] == "8000" and cmd[cmd.index("--host") + 1] == "0.0.0.0"
        assert "*" not in cmd, "trusting every proxy lets clients spoof X-Forwarded-For"
        # A flag would override the env var the platform sets to line the drain up with the pod's grace period.
        assert "--timeout-graceful-shutdown" not in cmd
        env = " ".join(a for k, a in final if k == "ENV")
        assert re.search(r"\bUVICORN_TIMEOUT_GRACEFUL_SHUTDOWN=\d+\b", env), "no graceful-shutdown timeout by default"
    else:
        assert cmd == ["python", "-m", app]


def test_read_only_root_friendly(dockerfile):
    env = " ".join(args for keyword, args in stages(dockerfile)[-1] if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "python would try to write .pyc files on a read-only root"
    assert any(k == "RUN" and "compileall" in a for k, a in stages(dockerfile)[-1]), "bytecode not precompiled"


def test_every_copy_source_exists_and_is_in_the_build_context(app, dockerfile):
    copies = [args for keyword, args in dockerfile if keyword == "COPY"]
    assert copies
    for args in copies:
        parts = shlex.split(args)
        if any(p.startswith("--from=") for p in parts):
            continue
        sources = [p for p in parts if not p.startswith("--")][:-1]
        for source in sources:
            path = APPS / source
            assert path.exists(), f"{app}: COPY {source} does not exist under apps/"
            assert not ignored(source.rstrip("/")), f"{app}: COPY {source} is excluded by .dockerignore"
    assert f"{app}/" in " ".join(copies), f"{app} package not copied"


def _third_party_imports(package: Path) -> set[str]:
    names = set()
    for file in package.rglob("*.py"):
        for node in ast.walk(parse(file.read_text())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    local = {p.name for p in APPS.iterdir() if p.is_dir()}
    return {n for n in names if n not in sys.stdlib_module_names and n not in local}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed_closure(requirements: list[str]) -> set[str]:
    """The distributions pip installs for these requirements (as resolved in this venv), extras ignored."""
    seen, todo = set(), [_norm(r) for r in requirements]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [_norm(re.split(r"[<>=!~\[ ;(]", r)[0]) for r in requires if "extra ==" not in r]
    return seen


def test_image_requirements_cover_every_third_party_import(app, dockerfile):
    copied = [shlex.split(a)[-2].rstrip("/") for k, a in dockerfile if k == "COPY" and "--from" not in a]
    packages = [APPS / c for c in copied if (APPS / c).is_dir()]
    lines = (APPS / app / "requirements.in").read_text().splitlines()
    required = _installed_closure(
        [re.split(r"[<>=!~\[ ;]", line.strip())[0] for line in lines if line.strip() and not line.startswith("#")]
    )
    distributions = importlib.metadata.packages_distributions()
    for package in packages:
        for module in _third_party_imports(package):
            dists = {_norm(d) for d in distributions.get(module, [])}
            assert dists & required, f"{app} image: {package.name} imports {module}, not in {app}/requirements.in"


def test_dockerignore_keeps_sources_and_drops_noise():
    assert ignored("notifier/__pycache__") and ignored(".local")
    assert not ignored("notifier/worker.py") and not ignored("clinic_common")


def test_the_api_image_ships_the_portals_templates_static_files_and_catalogs():
    """The portal reads these at run time (clinic_api.web): each must be in the build context and under a COPY."""
    package = APPS / "clinic_api"
    kinds = {
        "templates": list(package.glob("**/templates/**/*.html")),
        "static files": [p for p in (package / "web" / "static").iterdir() if p.is_file()],
        "catalogs": list(package.glob("*/locale/*/LC_MESSAGES/messages.po")),
    }
    copied = [shlex.split(a)[-2] for k, a in instructions(package / "Dockerfile") if k == "COPY" and "--from" not in a]
    for kind, files in kinds.items():
        assert files, f"no portal {kind} found"
        for path in files:
            rel = str(path.relative_to(APPS))
            assert not ignored(rel), f"{rel} is excluded by apps/.dockerignore: the image would lack it"
            assert any(rel.startswith(source) for source in copied if source.endswith("/")), f"{rel} is not copied"
    assert {p.parent.parent.name for p in kinds["catalogs"]} >= {"pt_BR", "en"}
