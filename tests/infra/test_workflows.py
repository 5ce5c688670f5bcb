"""The GitHub Actions workflows: valid YAML with the expected triggers and jobs, pinned actions, least permissions,
and the deploy flow the platform relies on (README tests on PRs, policy pack on every preview/up, prod gated)."""

import re
import shlex
import subprocess

import pytest
import yaml

from components.image_registry import APPS
from ops.db_restore import build_parser
from ops.first_deploy import build_parser as first_deploy_parser
from ops.first_deploy import local_image
from preview.graph import ROOT, stack_settings

WORKFLOWS = ROOT / ".github" / "workflows"
README = ROOT / "README.md"
EXPECTED = {
    "pr.yml": ({"pull_request"}, {"test", "offline-preview", "preview"}),
    "deploy.yml": ({"push"}, {"images", "dev", "prod"}),
    "destroy-dev.yml": ({"workflow_dispatch"}, {"kubernetes", "aws"}),
    "restore-drill.yml": ({"schedule", "workflow_dispatch"}, {"drill"}),
}
# owner/repo@<40-hex SHA> # vX.Y.Z — the comment names the release the SHA was verified against.
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


def load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def all_jobs():
    for name in EXPECTED:
        for job_name, job in load(name)["jobs"].items():
            yield name, job_name, job


def pulumi_steps(job: dict, command: str | None = None) -> list[dict]:
    return [
        s
        for s in steps(job)
        if s.get("uses", "").startswith("pulumi/actions@")
        and (command is None or s.get("with", {}).get("command") == command)
    ]


def test_the_workflows_are_exactly_the_expected_ones():
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_workflow_is_valid_yaml_with_its_triggers_and_jobs(name):
    document = load(name)
    triggers, jobs = EXPECTED[name]
    assert set(document["on"]) == triggers, name
    assert set(document["jobs"]) == jobs, name
    for job_name, job in document["jobs"].items():
        assert job.get("runs-on") and job.get("timeout-minutes"), f"{name}:{job_name}"
        for step in steps(job):
            assert ("uses" in step) != ("run" in step), f"{name}:{job_name}: a step has both or neither of uses/run"


def test_every_action_is_pinned_to_a_commit_sha_with_its_version_noted():
    for name in EXPECTED:
        text = (WORKFLOWS / name).read_text()
        uses_lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("uses:", "- uses:"))]
        assert uses_lines, name
        for line in uses_lines:
            reference, _, comment = line.split("uses:", 1)[1].partition("#")
            assert PINNED.match(reference.strip()), f"{name}: {line} is not pinned to a full commit SHA"
            assert re.fullmatch(r"v\d+\.\d+\.\d+", comment.strip()), f"{name}: {line} does not name its release"


def test_the_same_action_is_pinned_to_the_same_commit_everywhere():
    pins: dict[str, set[str]] = {}
    for _, _, job in all_jobs():
        for step in steps(job):
            if "uses" in step:
                action, _, sha = step["uses"].partition("@")
                pins.setdefault(action, set()).add(sha)
    assert {a: s for a, s in pins.items() if len(s) > 1} == {}


def test_permissions_are_least_and_id_token_only_where_oidc_is_used():
    for name in EXPECTED:
        document = load(name)
        assert document["permissions"] == {"contents": "read"}, f"{name}: workflow-wide permissions"
        for job_name, job in document["jobs"].items():
            uses_oidc = any(s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in steps(job))
            permissions = job.get("permissions", {})
            assert (permissions.get("id-token") == "write") == uses_oidc, f"{name}:{job_name}"
            if uses_oidc:
                configure = next(s for s in steps(job) if "configure-aws-credentials" in s.get("uses", ""))
                assert "role-to-assume" in configure["with"], f"{name}:{job_name}"
                assert not {"aws-access-key-id", "aws-secret-access-key"} & set(configure["with"])
            comments = any(s.get("with", {}).get("comment-on-pr") for s in steps(job))
            assert (permissions.get("pull-requests") == "write") == bool(comments), f"{name}:{job_name}"
            assert set(permissions) <= {"contents", "id-token", "pull-requests"}, f"{name}:{job_name}"
            assert permissions.get("contents", "read") == "read", f"{name}:{job_name}"


def test_no_long_lived_aws_keys_anywhere():
    for name in EXPECTED:
        text = (WORKFLOWS / name).read_text()
        assert "AWS_ACCESS_KEY_ID" not in text and "AWS_SECRET_ACCESS_KEY" not in text, name


def readme_commands() -> list[str]:
    """The set-up, check and test commands of the README's quick start."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    setup = next(b.strip() for b in blocks if "pip install -r requirements-dev.txt" in b)
    checks = next(b.strip() for b in blocks if "ruff check" in b)
    tests = next(b.strip() for b in blocks if b.strip().startswith(".venv/bin/python -m pytest"))
    return [setup, checks, tests]


def test_the_pr_workflow_runs_the_readme_test_commands_exactly():
    job = load("pr.yml")["jobs"]["test"]
    runs = [s["run"].strip() for s in steps(job) if "run" in s]
    assert runs == readme_commands()
    python = next(s for s in steps(job) if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["cache"] == "pip" and "requirements*.txt" in python["with"]["cache-dependency-path"]


def test_the_pr_workflow_posts_the_offline_preview_of_both_stacks():
    job = load("pr.yml")["jobs"]["offline-preview"]
    assert "permissions" not in job, "the offline preview needs no cloud access"
    script = "\n".join(s["run"] for s in steps(job) if "run" in s)
    assert "for stack in dev prod" in script and "-m preview" in script and "$GITHUB_STEP_SUMMARY" in script


def test_cloud_previews_comment_on_the_pr_with_the_policy_pack_and_skip_forks():
    job = load("pr.yml")["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert "head.repo.full_name == github.repository" in job["if"]
    [preview] = pulumi_steps(job, "preview")
    assert preview["with"]["comment-on-pr"] is True and preview["with"]["policyPacks"] == "policy"
    assert preview["with"]["stack-name"] == "${{ matrix.stack }}"
    assert preview["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_every_preview_and_up_runs_the_policy_pack_with_its_venv():
    found = 0
    for name, job_name, job in all_jobs():
        for step in pulumi_steps(job):
            command = step.get("with", {}).get("command")
            if command in ("preview", "up"):
                found += 1
                assert step["with"].get("policyPacks") == "policy", f"{name}:{job_name}"
                installs = "\n".join(s.get("run", "") for s in steps(job))
                assert "policy/venv/bin/pip install -r policy/requirements.txt" in installs, f"{name}:{job_name}"
    assert found == 3  # preview (one step, matrix dev/prod), up dev, up prod
    assert (ROOT / "policy" / "PulumiPolicy.yaml").is_file()


def test_deploy_builds_every_image_once_then_dev_then_gated_prod():
    document = load("deploy.yml")
    jobs = document["jobs"]
    assert document["on"]["push"]["branches"] == ["main"]
    assert document["env"]["TAG"] == "${{ github.sha }}"
    build = "\n".join(s.get("run", "") for s in steps(jobs["images"]))
    # Each Dockerfile built with apps/ as the context, tagged with the commit SHA, saved for both stacks under the
    # local names ops.first_deploy loads and pushes.
    assert "clinic_api:clinic-api notifier:clinic-notifier file_processor:clinic-file-processor" in build
    assert re.search(r'docker build .*-f "apps/\$dir/Dockerfile" -t "\$repository:\$TAG" apps/$', build, re.M), build
    local = {local_image(app, "$TAG") for app in APPS}
    assert local == {"clinic-api:$TAG", "clinic-notifier:$TAG", "clinic-file-processor:$TAG"}
    assert 'docker save -o images.tar "clinic-api:$TAG" "clinic-notifier:$TAG" "clinic-file-processor:$TAG"' in build
    assert "permissions" not in jobs["images"], "building needs no cloud access"
    [upload] = [s for s in steps(jobs["images"]) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "images.tar"
    assert jobs["dev"]["needs"] == "images" and set(jobs["prod"]["needs"]) == {"images", "dev"}
    assert jobs["dev"]["environment"] == "dev" and jobs["prod"]["environment"] == "production"
    for stack in ("dev", "prod"):
        job = jobs[stack]
        names = [s.get("uses", s.get("name", "")).split("@")[0] for s in steps(job)]
        push = next(s for s in steps(job) if "ops.first_deploy" in s.get("run", ""))
        cli = next(i for i, s in enumerate(steps(job)) if s.get("name") == "Install the Pulumi CLI")
        order = [names.index("actions/download-artifact"), cli, steps(job).index(push)]
        assert order == sorted(order), f"{stack}: {names}"
        # The README's command, as its parser reads it: this stack, this commit, CI's saved images, no up of its own.
        words = shlex.split(push["run"])
        args = first_deploy_parser().parse_args(words[words.index("ops.first_deploy") + 1 :])
        assert (args.stack, args.tag, str(args.images_tar), args.up) == (stack, "$TAG", "images.tar", False)
        assert words[0] == "venv/bin/python", "the program's venv has what ops.first_deploy imports"
        assert push["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
        [up] = pulumi_steps(job, "up")
        assert up["with"]["stack-name"] == stack and steps(job).index(up) == len(steps(job)) - 1


def image_steps(action: str) -> dict[str, dict]:
    """The images job's steps using `action`, by the image they name."""
    found = {}
    for step in steps(load("deploy.yml")["jobs"]["images"]):
        if step.get("uses", "").startswith(f"{action}@"):
            reference = step["with"].get("image") or step["with"].get("image-ref")
            found[reference] = step
    return found


def test_each_image_is_scanned_and_fails_the_build_on_fixable_high_or_critical_findings():
    scans = image_steps("aquasecurity/trivy-action")
    assert set(scans) == {f"{local_image(app, '')}${{{{ env.TAG }}}}" for app in APPS}
    for image, step in scans.items():
        options = step["with"]
        assert options["severity"] == "HIGH,CRITICAL" and options["ignore-unfixed"] is True, image
        assert str(options["exit-code"]) == "1", f"{image}: findings must fail the job"
        assert options.get("scan-type", "image") == "image" and options["vuln-type"] == "os,library", image


def test_each_image_gets_an_sbom_kept_as_an_artifact_before_anything_is_saved_for_the_stacks():
    sboms = image_steps("anchore/sbom-action")
    assert set(sboms) == {f"{local_image(app, '')}${{{{ env.TAG }}}}" for app in APPS}
    for image, step in sboms.items():
        options = step["with"]
        assert options["format"] == "spdx-json" and image.split(":")[0] in options["artifact-name"], image
        assert options.get("upload-artifact", True) is True and options["upload-artifact-retention"] >= 90, image
    job = steps(load("deploy.yml")["jobs"]["images"])
    save = next(i for i, s in enumerate(job) if "docker save" in s.get("run", ""))
    checks = [job.index(s) for s in [*sboms.values(), *image_steps("aquasecurity/trivy-action").values()]]
    assert max(checks) < save, "an image is saved for the stacks only once it is scanned"


def test_pull_request_previews_run_against_the_images_each_stack_exports(dev):
    job = load("pr.yml")["jobs"]["preview"]
    step = next(s for s in steps(job) if s.get("name") == "The stack's deployed images into its config")
    [preview] = pulumi_steps(job, "preview")
    assert steps(job).index(step) < steps(job).index(preview)
    assert 'pulumi stack output "${app}Image"' in step["run"] and f"for app in {' '.join(APPS)};" in step["run"]
    assert 'pulumi config set --stack "$STACK" --path "clinic-platform:images.$app" "$image"' in step["run"]
    assert {f"{app}Image" for app in APPS} <= set(dev.exports), "the outputs the previews read"


def test_the_image_config_keys_exist_in_the_stack_settings():
    """ops.first_deploy writes images.<app> for every bundled app: the settings must know them (unknown keys are
    refused)."""
    from stacks.settings import ImageSettings

    assert {field.alias for field in ImageSettings.model_fields.values()} == set(APPS)


def test_updates_of_one_stack_never_overlap_or_get_cancelled():
    groups = {}
    for name, job_name, job in all_jobs():
        if any(s.get("with", {}).get("command") in ("up", "destroy") for s in pulumi_steps(job)):
            concurrency = job["concurrency"]
            assert concurrency["cancel-in-progress"] is False, f"{name}:{job_name}"
            groups[f"{name}:{job_name}"] = concurrency["group"]
    assert groups == {
        "deploy.yml:dev": "pulumi-stack-dev",
        "deploy.yml:prod": "pulumi-stack-prod",
        "destroy-dev.yml:kubernetes": "pulumi-stack-dev",
        "destroy-dev.yml:aws": "pulumi-stack-dev",
    }
    assert load("pr.yml")["concurrency"]["cancel-in-progress"] is True


def test_destroy_dev_demands_a_typed_confirmation_and_touches_only_dev():
    document = load("destroy-dev.yml")
    confirm = document["on"]["workflow_dispatch"]["inputs"]["confirm"]
    assert confirm["required"] is True and confirm["type"] == "string"
    first_job = document["jobs"]["kubernetes"]
    first = steps(first_job)[0]
    assert first["env"]["TYPED"] == "${{ inputs.confirm }}"
    assert document["env"]["CONFIRMATION"] in confirm["description"]
    # The guard itself, run as the runner runs it (bash -e): only the exact phrase gets past it.
    for typed, code in (("destroy clinic-dev", 0), ("destroy clinic-dev ", 1), ("destroy clinic-prod", 1), ("", 1)):
        result = subprocess.run(
            ["bash", "-e", "-c", first["run"]],
            capture_output=True,
            text=True,
            timeout=10,
            env={"TYPED": typed, "CONFIRMATION": document["env"]["CONFIRMATION"]},
        )
        assert result.returncode == code, (typed, result.stdout)
        assert (f"confirmation was '{typed}'" in result.stdout) == bool(code), (typed, result.stdout)
    assert document["jobs"]["aws"]["needs"] == "kubernetes", "nothing is deleted before the confirmation is checked"
    for job in document["jobs"].values():
        [destroy] = pulumi_steps(job, "destroy")
        assert destroy["with"]["stack-name"] == "dev"
    assert "prod" not in (WORKFLOWS / "destroy-dev.yml").read_text().replace("Prod has no destroy", "")


def drill_command(job: dict) -> list[str]:
    """The `python -m ops.db_restore ...` arguments of the drill step, shell continuations joined."""
    script = next(s["run"] for s in steps(job) if "ops.db_restore" in s.get("run", ""))
    line = next(text for text in script.replace("\\\n", " ").splitlines() if "ops.db_restore" in text)
    words = shlex.split(line.split(">")[0])
    return words[words.index("ops.db_restore") + 1 :]


def test_restore_drill_runs_monthly_and_on_demand_one_at_a_time():
    document = load("restore-drill.yml")
    [schedule] = document["on"]["schedule"]
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert day.isdigit() and 1 <= int(day) <= 28 and (month, weekday) == ("*", "*"), schedule
    assert document["on"]["workflow_dispatch"]["inputs"]["rto-target-seconds"]["default"] == "1800"
    job = document["jobs"]["drill"]
    # A cancelled drill would leave its instance running: never cancelled, never two at once.
    assert job["concurrency"] == {"group": "restore-drill", "cancel-in-progress": False}
    assert job["environment"] == "restore-drill"


def test_restore_drill_calls_the_command_as_its_parser_expects_and_outlives_both_waits():
    document = load("restore-drill.yml")
    job = document["jobs"]["drill"]
    argv = drill_command(job)
    values = {
        "$AWS_REGION": "eu-west-1",
        "$SOURCE": "clinic-prod-db-postgres1",
        "$RTO_TARGET_SECONDS": "1800",
        "$WAIT_SECONDS": document["env"]["WAIT_SECONDS"],
        "$DELETE_WAIT_SECONDS": document["env"]["DELETE_WAIT_SECONDS"],
    }
    args = build_parser().parse_args([values.get(a, a) for a in argv])
    assert (args.command, args.source, args.json) == ("drill", "clinic-prod-db-postgres1", True)
    assert job["timeout-minutes"] * 60 >= args.timeout + args.delete_timeout + 15 * 60, (
        "the job must outlive both waits"
    )
    assert document["env"]["RTO_TARGET_SECONDS"] == "${{ inputs.rto-target-seconds || '1800' }}"


def test_restore_drill_targets_prod_and_keeps_its_figures_even_when_it_fails():
    job = load("restore-drill.yml")["jobs"]["drill"]
    names = [s.get("uses", s.get("name", "")).split("@")[0] for s in steps(job)]
    drill = next(i for i, s in enumerate(steps(job)) if "ops.db_restore" in s.get("run", ""))
    assert names.index("aws-actions/configure-aws-credentials") < names.index("The prod database instance") < drill
    source = next(s for s in steps(job) if s.get("name") == "The prod database instance")
    assert source["env"]["DB_INSTANCE_ID"] == "${{ vars.DB_INSTANCE_ID }}"
    assert "pulumi stack output databaseInstanceId --stack prod" in source["run"]
    assert "--json > restore-drill.json" in steps(job)[drill]["run"]
    [upload] = [s for s in steps(job) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "restore-drill.json"
    # Inputs and outputs reach the scripts through env, never spliced into the shell text.
    assert all("${{" not in s.get("run", "") for s in steps(job))


# --- Where the jobs run: the cluster's API endpoint is private (components/ci_runner.py) ---------------------------

RUNNER_LABEL = re.compile(
    r"^codebuild-(?P<project>clinic-(?P<stack>dev|prod|\$\{\{ matrix\.stack \}\})-ci-runner)"
    r"-\$\{\{ github\.run_id \}\}-\$\{\{ github\.run_attempt \}\}$"
)
# A `pulumi` command in a shell step that works on a stack's resources (config and stack output do not).
PULUMI_STACK_COMMAND = re.compile(r"^\s*pulumi\s+(up|preview|destroy|refresh|import|state\s+delete)\b", re.M)


def runner_jobs():
    """((workflow, job, runs-on), job) for every job that runs on a stack's in-VPC CodeBuild runner."""
    for name, job_name, job in all_jobs():
        runs_on = job["runs-on"]
        if isinstance(runs_on, str) and runs_on.startswith("codebuild-"):
            yield (name, job_name, runs_on), job


def stack_operations(job: dict) -> list[tuple[str, dict]]:
    """(command, step) of every step that previews, updates or destroys a stack."""
    found = [(s["with"]["command"], s) for s in pulumi_steps(job) if s.get("with", {}).get("command")]
    found += [(m.group(1), s) for s in steps(job) for m in [PULUMI_STACK_COMMAND.search(s.get("run", ""))] if m]
    return found


def kubernetes_teardown_urn(graph) -> str:
    return graph.one("pulumi:providers:kubernetes").urn


def test_every_job_that_drives_a_stack_runs_on_that_stacks_runner_in_the_vpc():
    """A GitHub-hosted runner cannot reach the private endpoint: any preview, update or destroy of a stack with
    Kubernetes resources started there fails with "cluster unreachable"."""
    checked = 0
    for name, job_name, job in all_jobs():
        for command, step in stack_operations(job):
            if command == "destroy" and _destroys_what_the_runner_left(name, job_name, job):
                continue
            checked += 1
            label = RUNNER_LABEL.match(str(job["runs-on"]))
            assert label, f"{name}:{job_name} runs `pulumi {command}` on {job['runs-on']!r}, outside the VPC"
            stack = step.get("with", {}).get("stack-name", "")
            assert label["stack"] == stack or (label["stack"].startswith("${{") and stack == "${{ matrix.stack }}"), (
                f"{name}:{job_name}: the {stack} stack on {label['project']}'s runner"
            )
    assert checked == 4  # pr preview (one step, dev and prod), deploy dev, deploy prod, destroy-dev kubernetes


def _destroys_what_the_runner_left(name: str, job_name: str, job: dict) -> bool:
    """The one allowed exception: a destroy on a GitHub-hosted runner that needs a runner job which already
    destroyed every Kubernetes resource (the Kubernetes provider and its dependents)."""
    jobs = load(name)["jobs"]
    needs = job.get("needs", [])
    for first in [needs] if isinstance(needs, str) else needs:
        if not RUNNER_LABEL.match(str(jobs[first]["runs-on"])):
            continue
        for command, step in stack_operations(jobs[first]):
            target = step.get("with", {}).get("target", "")
            if command == "destroy" and target and step["with"].get("target-dependents") is True:
                return True
    return False


def test_the_kubernetes_teardown_targets_the_provider_every_kubernetes_resource_depends_on(dev):
    document = load("destroy-dev.yml")
    [step] = pulumi_steps(document["jobs"]["kubernetes"], "destroy")
    urn = step["with"]["target"].replace("${{ env.KUBERNETES_PROVIDER }}", document["env"]["KUBERNETES_PROVIDER"])
    assert urn == kubernetes_teardown_urn(dev)
    provider = dev.by_urn[urn]
    kubernetes = [r for r in dev.records if r.type.startswith("kubernetes:")]
    assert kubernetes and all(dev.depends_on(r, provider) for r in kubernetes)
    # What the second job deletes from outside the VPC must not need the cluster's API.
    runner = dev.one("clinic:index:CiRunner")
    assert not dev.depends_on(runner, provider) and not [
        r for r in dev.descendants(runner) if dev.depends_on(r, provider)
    ]


def test_the_runner_labels_name_the_projects_the_stacks_create(dev, prod):
    for (name, job_name, runs_on), _ in runner_jobs():
        label = RUNNER_LABEL.match(runs_on)
        assert label, f"{name}:{job_name}: {runs_on!r} is not codebuild-<project>-<run id>-<attempt>"
        stacks = ["dev", "prod"] if label["stack"].startswith("${{") else [label["stack"]]
        for stack in stacks:
            graph = {"dev": dev, "prod": prod}[stack]
            project = label["project"].replace("${{ matrix.stack }}", stack)
            assert graph.exports["ciRunnerProject"] == (project, False), f"{name}:{job_name}"


def test_fork_pull_requests_never_reach_the_runner():
    job = load("pr.yml")["jobs"]["preview"]
    assert RUNNER_LABEL.match(job["runs-on"])
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]


# --- Credentials outlive the jobs (bootstrap/github-oidc.yaml) -------------------------------------------------

BOOTSTRAP = ROOT / "bootstrap" / "github-oidc.yaml"
# Which role of the bootstrap template each workflow variable names.
ROLE_OF_VARIABLE = {
    "AWS_DEPLOY_ROLE_ARN": "DeployRole",
    "AWS_DEV_PREVIEW_ROLE_ARN": "PreviewRole",
    "AWS_PROD_PREVIEW_ROLE_ARN": "PreviewRole",
    "AWS_RESTORE_DRILL_ROLE_ARN": "RestoreDrillRole",
}


class _CloudFormationLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form functions (!Sub, !Ref, ...) as {"Fn": value}."""


_CloudFormationLoader.add_multi_constructor(
    "!",
    lambda loader, tag, node: {
        f"!{tag}": (
            loader.construct_scalar(node)
            if isinstance(node, yaml.ScalarNode)
            else loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
        )
    },
)


def bootstrap() -> dict:
    return yaml.load(BOOTSTRAP.read_text(), Loader=_CloudFormationLoader)


def aws_sessions():
    """(where, job, step, role logical id) of every configure-aws-credentials step."""
    for name, job_name, job in all_jobs():
        for step in steps(job):
            if step.get("uses", "").startswith("aws-actions/configure-aws-credentials@"):
                variables = set(re.findall(r"vars\.(\w+)", step["with"]["role-to-assume"]))
                assert variables and variables <= set(ROLE_OF_VARIABLE), f"{name}:{job_name}: {variables}"
                roles = {ROLE_OF_VARIABLE[v] for v in variables}
                assert len(roles) == 1, f"{name}:{job_name} picks between different roles: {roles}"
                yield f"{name}:{job_name}", job, step, roles.pop()


def test_every_aws_session_lasts_the_whole_job_and_its_role_allows_that_long():
    resources = bootstrap()["Resources"]
    sessions = list(aws_sessions())
    assert len(sessions) == 6  # pr preview, deploy dev and prod, destroy-dev's two jobs, the restore drill
    for where, job, step, role in sessions:
        duration = step["with"].get("role-duration-seconds")
        assert isinstance(duration, int), f"{where}: role-duration-seconds unset (the default is one hour)"
        assert duration >= job["timeout-minutes"] * 60, (
            f"{where}: a {duration} s session ends before the job's {job['timeout-minutes']} min timeout"
        )
        maximum = resources[role]["Properties"]["MaxSessionDuration"]
        assert 3600 <= maximum <= 43200, f"{role}: MaxSessionDuration {maximum} outside what IAM accepts"
        assert duration <= maximum, f"{where}: asks {duration} s of {role}, which allows {maximum} s"
        # Role chaining (assuming a role with another role's session) caps the session at one hour.
        assert not step["with"].get("role-chaining") and "aws-access-key-id" not in step["with"], where


def test_each_role_trusts_exactly_the_jobs_that_assume_it():
    resources = bootstrap()["Resources"]

    def subject(role: str) -> str:
        statement = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        [trust] = statement
        assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        return trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"]["!Sub"]

    expected = {
        "DeployRole": "repo:${GitHubRepository}:environment:${DeployEnvironment}",
        "PreviewRole": "repo:${GitHubRepository}:pull_request",
        "RestoreDrillRole": "repo:${GitHubRepository}:environment:restore-drill",
    }
    assert {role: subject(role) for role in expected} == expected
    for where, job, _, role in aws_sessions():
        workflow = load(where.split(":")[0])
        if role == "DeployRole":
            assert job["environment"] in bootstrap()["Parameters"]["DeployEnvironment"]["AllowedValues"], where
        elif role == "RestoreDrillRole":
            assert job["environment"] == "restore-drill", where
        else:
            # OIDC's subject is the environment whenever a job has one: the preview role trusts jobs without.
            assert "environment" not in job and set(workflow["on"]) == {"pull_request"}, where


def test_the_stack_files_name_the_roles_the_bootstrap_creates():
    resources = bootstrap()["Resources"]
    for stack in ("dev", "prod"):
        settings = stack_settings(stack)
        for role, arn in (
            ("DeployRole", settings.cluster.deploy_role_arn),
            ("PreviewRole", settings.cluster.preview_role_arn),
        ):
            name = resources[role]["Properties"]["RoleName"]["!Sub"].replace("${Stack}", stack)
            assert arn.endswith(f":role/{name}"), f"{stack}: {arn} is not the bootstrap's {name}"


def test_the_deploy_role_is_the_only_broad_one_and_previews_cannot_read_patient_data():
    resources = bootstrap()["Resources"]
    [deny] = resources["PreviewRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and {
        "s3:GetObject*",
        "secretsmanager:GetSecretValue",
        "kms:Decrypt",
        "sqs:ReceiveMessage",
        "logs:GetLogEvents",
    } <= set(deny["Action"])
    broad = [
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::IAM::Role"
        and any("AdministratorAccess" in str(arn) for arn in r["Properties"].get("ManagedPolicyArns", []))
    ]
    assert broad == ["DeployRole"]


def test_the_readme_first_deployment_names_every_secret_and_variable_the_workflows_read():
    text = README.read_text()
    section = text[text.index("## First deployment") : text.index("## Who reaches the cluster")]
    used = set()
    for name in EXPECTED:
        used |= set(re.findall(r"\b(?:vars|secrets)\.(\w+)", (WORKFLOWS / name).read_text()))
    used.discard("GITHUB_TOKEN")
    missing = sorted(n for n in used if f"`{n}`" not in section)
    assert not missing, f"README 'First deployment' does not say how to set {missing}"
    assert "--exclude-dependents" in section and kubernetes_provider_urn_in_readme(section)


def kubernetes_provider_urn_in_readme(section: str) -> bool:
    """The AWS-only first `up` excludes the provider the Kubernetes teardown targets (same URN)."""
    urn = load("destroy-dev.yml")["env"]["KUBERNETES_PROVIDER"]
    return f"--exclude '{urn}'" in section


def test_ci_runs_the_readme_set_up_checks_and_tests_in_that_order():
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    setup, checks, tests = readme_commands()
    commands = [setup.replace("pip install", "pip install -q"), *checks.split(" && "), tests]
    positions = [lines.index(command) for command in commands]
    assert positions == sorted(positions), f".ci/run runs {commands} out of order"
    assert lines[-1] == tests, "pytest's summary must be the last thing .ci/run prints"
