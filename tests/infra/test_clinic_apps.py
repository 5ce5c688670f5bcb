"""ClinicApps on the recorded graph of both stacks: hardened pods, least-privilege IAM, ordering, no secret leaks."""

import json

import pytest
from pulumi.runtime import rpc

from components import clinic_apps
from tests.infra.pulumi_mocks import GENERATED_SECRET, pushed_digest

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
JOB = "kubernetes:batch/v1:Job"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
CERTIFICATE = "aws:acm/certificate:Certificate"
RECORD = "aws:route53/record:Record"
DATA_ACTION_PREFIXES = ("s3:", "sqs:", "ses:", "secretsmanager:", "kms:")


def clinic_ingress(graph):
    """The clinic's own Ingress (prod's video service has one too, in the same IngressGroup)."""
    return next(i for i in graph.of_type(INGRESS) if i.name.endswith("-apps-ingress"))


def pod_specs(graph):
    specs = [
        (d.name, d.inputs["spec"]["template"]["spec"])
        for d in graph.of_type(DEPLOYMENT)
        if d.inputs["metadata"].get("namespace") == "clinic"
    ]
    specs += [(j.name, j.inputs["spec"]["template"]["spec"]) for j in graph.of_type(JOB)]
    assert len(specs) == 5, [n for n, _ in specs]  # three Deployments, the API's and the notifier's migrations
    return specs


def test_every_clinic_pod_meets_the_restricted_standard_with_requests_and_limits(stack):
    for name, spec in pod_specs(stack):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"] == {"drop": ["ALL"]}, name
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, name
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
            assert resources["limits"]["cpu"] and resources["limits"]["memory"], name


def test_no_clinic_pod_gets_a_kubernetes_api_token(stack):
    """The apps never call the Kubernetes API: neither the pod spec nor the service account mounts a token."""
    for name, spec in pod_specs(stack):
        assert spec["automountServiceAccountToken"] is False, name
    for account in stack.of_type("kubernetes:core/v1:ServiceAccount"):
        if account.inputs["metadata"]["namespace"] == "clinic":
            assert account.inputs["automountServiceAccountToken"] is False, account.name


def test_deployments_probe_the_apps_real_endpoints_spread_over_zones_and_roll_with_no_unavailable(stack):
    for deployment in stack.of_type(DEPLOYMENT):
        if deployment.inputs["metadata"].get("namespace") != "clinic":
            continue
        spec = deployment.inputs["spec"]
        container = spec["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", deployment.name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", deployment.name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", deployment.name
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, deployment.name
        zones = spec["template"]["spec"]["topologySpreadConstraints"][0]
        assert zones["topologyKey"] == "topology.kubernetes.io/zone", deployment.name


def test_namespace_enforces_the_restricted_pod_security_standard(stack):
    namespace = next(
        n for n in stack.of_type("kubernetes:core/v1:Namespace") if n.inputs["metadata"]["name"] == "clinic"
    )
    assert namespace.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def role_policy(graph, suffix):
    policy = next(p for p in graph.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.endswith(suffix))
    return json.loads(policy.inputs["policy"])["Statement"]


def test_api_role_reaches_only_the_exam_prefix_its_queues_and_the_database_secret(stack):
    statements = {s["Sid"]: s for s in role_policy(stack, "apps-api-role-policy")}
    bucket_arn = next(b for b in stack.of_type("aws:s3/bucket:Bucket") if b.name.endswith("-exams-bucket")).state["arn"]
    assert statements["ExamObjects"]["Action"] == ["s3:GetObject", "s3:PutObject"]
    assert statements["ExamObjects"]["Resource"] == f"{bucket_arn}/exams/*"
    assert statements["ExamListing"]["Condition"] == {"StringLike": {"s3:prefix": "exams/*"}}
    queue_arns = sorted(q.state["arn"] for q in stack.of_type("aws:sqs/queue:Queue") if not q.name.endswith("-dlq"))
    assert statements["Events"]["Resource"] == queue_arns
    assert statements["DatabaseSecret"]["Resource"] == stack.exports["databaseSecretArn"][0]
    assert "s3:DeleteObject" not in json.dumps(statements), "the API never deletes a patient's result"


def test_notifier_role_consumes_its_queues_and_sends_only_as_the_clinic_identity(stack):
    statements = {s["Sid"]: s for s in role_policy(stack, "apps-notifier-role-policy")}
    assert statements["Send"]["Action"] == "ses:SendEmail"
    identity = stack.one("aws:sesv2/emailIdentity:EmailIdentity").state["arn"]
    config_set = stack.one("aws:sesv2/configurationSet:ConfigurationSet").state["arn"]
    assert sorted(statements["Send"]["Resource"]) == sorted([identity, config_set])
    consumed = statements["Consume"]["Resource"]
    assert len(consumed) == 4 and not any(arn.endswith(("-file", "-dlq")) for arn in consumed)
    assert "sqs:SendMessage" not in statements["Consume"]["Action"]
    depth = statements["DeadLetterDepth"]
    assert depth["Action"] == "sqs:GetQueueAttributes", "the DLQs' depth, never their messages"
    assert len(depth["Resource"]) == 4 and all(
        arn.endswith("-dlq") and "-file-" not in arn for arn in depth["Resource"]
    )


def test_file_processor_role_consumes_only_the_file_queue_and_moves_only_into_quarantine(stack):
    statements = {s["Sid"]: s for s in role_policy(stack, "apps-file-processor-role-policy")}
    bucket_arn = next(b for b in stack.of_type("aws:s3/bucket:Bucket") if b.name.endswith("-exams-bucket")).state["arn"]
    [file_queue] = [q.state["arn"] for q in stack.of_type("aws:sqs/queue:Queue") if q.name.endswith("events-file")]
    assert statements["Consume"]["Resource"] == file_queue
    assert sorted(statements["Consume"]["Action"]) == [
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    uploads, quarantine = f"{bucket_arn}/exams/*", f"{bucket_arn}/quarantine/exams/*"
    assert statements["ReadResults"] == {
        "Sid": "ReadResults",
        "Effect": "Allow",
        "Action": "s3:GetObject",
        "Resource": [uploads, quarantine],
    }
    assert (statements["SetAside"]["Action"], statements["SetAside"]["Resource"]) == ("s3:DeleteObject", uploads)
    assert (statements["Quarantine"]["Action"], statements["Quarantine"]["Resource"]) == ("s3:PutObject", quarantine)
    assert statements["ResultListing"]["Condition"] == {"StringLike": {"s3:prefix": ["exams/*", "quarantine/exams/*"]}}
    key = statements["ExamKey"]
    exam_key = next(k for k in stack.of_type("aws:kms/key:Key") if k.name.endswith("-exams-key")).state["arn"]
    region = file_queue.split(":")[3]
    assert (key["Action"], key["Resource"]) == (["kms:Decrypt", "kms:GenerateDataKey"], exam_key)
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}, "only through S3"
    granted = json.dumps(statements)
    assert "ses:" not in granted and "sqs:SendMessage" not in granted, "its verdicts go through the API's outbox"


@pytest.mark.parametrize(
    "suffix", ["apps-api-role-policy", "apps-notifier-role-policy", "apps-file-processor-role-policy"]
)
def test_no_data_action_is_granted_on_every_resource(stack, suffix):
    for statement in role_policy(stack, suffix):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert not any(a.endswith("*") for a in actions), statement
        if any(a.startswith(DATA_ACTION_PREFIXES) for a in actions):
            assert "*" not in resources, f"{suffix} grants {actions} on *"


def test_each_app_runs_under_its_own_service_account_and_role(stack):
    accounts = {
        a.inputs["metadata"]["name"]: a
        for a in stack.of_type("kubernetes:core/v1:ServiceAccount")
        if a.inputs["metadata"]["namespace"] == "clinic"
    }
    assert sorted(accounts) == ["clinic-api", "clinic-file-processor", "clinic-notifier"]
    for name, spec in pod_specs(stack):
        assert spec["serviceAccountName"] in accounts, name


def test_every_irsa_role_is_assumable_only_by_the_service_account_annotated_with_it(stack):
    """Follows each annotation to its role and reads that role's trust: `sub` names this very service account."""
    roles = {r.state["arn"]: r for r in stack.of_type("aws:iam/role:Role")}
    oidc_arn = stack.one("eks:index:Cluster").state["oidcProviderArn"]
    annotated = [
        a
        for a in stack.of_type("kubernetes:core/v1:ServiceAccount")
        if "eks.amazonaws.com/role-arn" in a.inputs["metadata"].get("annotations", {})
    ]
    assert {"clinic-api", "clinic-notifier", "clinic-file-processor", "aws-load-balancer-controller"} <= {
        a.inputs["metadata"]["name"] for a in annotated
    }
    for account in annotated:
        metadata = account.inputs["metadata"]
        role = roles[metadata["annotations"]["eks.amazonaws.com/role-arn"]]
        [statement] = role.input("assumeRolePolicy", "Statement")
        assert statement["Principal"] == {"Federated": oidc_arn}, role.name
        condition = statement["Condition"]["StringEquals"]
        assert [v for k, v in condition.items() if k.endswith(":sub")] == [
            f"system:serviceaccount:{metadata['namespace']}:{metadata['name']}"
        ], f"{metadata['name']} is annotated with {role.name}, which trusts {condition}"
        assert [v for k, v in condition.items() if k.endswith(":aud")] == ["sts.amazonaws.com"], role.name


def migration_jobs(graph):
    return {j.inputs["spec"]["template"]["spec"]["containers"][0]["command"][-1]: j for j in graph.of_type(JOB)}


def test_each_deployment_rolls_out_only_after_its_own_apps_migrations(stack):
    """Each app migrates its own tables (the notifier's sent-events table, the API's schema): a Deployment waits for
    its app's Job, and no longer for the other app's."""
    jobs = migration_jobs(stack)
    assert sorted(jobs) == ["clinic_api.migrate", "notifier.migrate"]
    assert jobs["notifier.migrate"].input("spec", "template", "spec", "serviceAccountName") == "clinic-notifier"
    deployments = {
        d.inputs["metadata"]["name"]: d
        for d in stack.of_type(DEPLOYMENT)
        if d.inputs["metadata"].get("namespace") == "clinic"
    }
    for app, own, other in (
        ("clinic-api", "clinic_api.migrate", "notifier.migrate"),
        ("clinic-notifier", "notifier.migrate", "clinic_api.migrate"),
    ):
        assert stack.depends_on(deployments[app], jobs[own]), f"{app} must wait for {jobs[own].name}"
        assert not stack.depends_on(deployments[app], jobs[other]), f"{app} need not wait for {jobs[other].name}"
        command = deployments[app].inputs["spec"]["template"]["spec"]["containers"][0].get("command", [])
        assert "migrate" not in " ".join(command), "pods never migrate on start"
    # The file processor runs no migrations: it writes the API's exam columns, so it waits for the API's.
    assert stack.depends_on(deployments["clinic-file-processor"], jobs["clinic_api.migrate"])
    assert not stack.depends_on(deployments["clinic-file-processor"], jobs["notifier.migrate"])
    secrets = [s for s in stack.of_type("kubernetes:core/v1:Secret") if s.name.endswith(("api-jwt", "api-data-key"))]
    assert len(secrets) == 2
    for waiting in (deployments["clinic-api"], jobs["clinic_api.migrate"]):
        for secret in secrets:
            assert stack.depends_on(waiting, secret), f"{waiting.name} reads the {secret.name} Secret"


def test_a_new_image_gets_a_new_migrations_job_for_that_app_only(dev):
    from tests.infra.pulumi_mocks import evaluate_program

    other = evaluate_program(
        "dev", {"clinic-platform:images": {"api": "0.2.0", "notifier": "0.1.0", "fileProcessor": "0.1.0"}}
    )
    before, after = migration_jobs(dev), migration_jobs(other)
    api_before, api_after = before["clinic_api.migrate"], after["clinic_api.migrate"]
    assert api_before.inputs["metadata"]["name"] != api_after.inputs["metadata"]["name"]
    # The Job runs the digest ECR holds for the new tag, not the tag.
    image = api_after.input("spec", "template", "spec")["containers"][0]["image"]
    assert image.endswith(f"/clinic-dev/api@{pushed_digest('clinic-dev/api', '0.2.0')}"), image
    assert (
        before["notifier.migrate"].inputs["metadata"]["name"] == after["notifier.migrate"].inputs["metadata"]["name"]
    ), "an unchanged image does not migrate again"


def test_clinic_ingress_is_deleted_before_the_controller_the_cluster_and_the_vpc(stack):
    ingress = clinic_ingress(stack)
    controller = next(
        r for r in stack.of_type("kubernetes:helm.sh/v3:Release") if r.name.endswith("lb-controller-release")
    )
    janitors = [r for r in stack.of_type("pulumi-python:dynamic:Resource") if "lb-janitor" in r.name]
    for resource in (controller, *janitors, *(stack.one(typ) for typ in ("eks:index:Cluster", "aws:ec2/vpc:Vpc"))):
        assert stack.deleted_before(ingress, resource), f"the Ingress must go before {resource.name}"
    annotations = ingress.inputs["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert annotations["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/readyz"


def test_https_with_redirect_when_a_certificate_is_configured():
    from tests.infra.pulumi_mocks import evaluate_program

    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    graph = evaluate_program(
        "prod",
        {
            "clinic-platform:apps": {"apiReplicas": 3, "hostname": "clinic.example.org", "certificateArn": arn},
            "clinic-platform:telemedicine": {"hostname": "meet.clinic.example.org", "certificateArn": arn},
        },
    )
    annotations = clinic_ingress(graph).inputs["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == arn
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations["alb.ingress.kubernetes.io/ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
    assert not graph.of_type(CERTIFICATE), "a certificate given is used, none is issued"


def test_prod_issues_its_certificate_in_its_zone_and_the_alb_listens_only_once_it_is_valid(prod):
    certificate = prod.one(CERTIFICATE, "clinic-prod-apps-cert")
    issued = prod.one("aws:acm/certificateValidation:CertificateValidation", "clinic-prod-apps-cert-issued")
    assert (certificate.inputs["domainName"], certificate.inputs["validationMethod"]) == ("clinic.example.org", "DNS")
    validation = prod.one(RECORD, "clinic-prod-apps-cert-validation")
    assert validation.inputs["zoneId"] == "Z0123456789EXAMPLE"
    assert validation.inputs["name"] == certificate.state["domainValidationOptions"][0]["resourceRecordName"]
    assert issued.inputs["validationRecordFqdns"] == [validation.state["fqdn"]]
    ingress = clinic_ingress(prod)
    annotations = ingress.inputs["metadata"]["annotations"]
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"] == certificate.state["arn"]
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert annotations["alb.ingress.kubernetes.io/ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-Res-2021-06"
    assert prod.depends_on(ingress, issued), "the HTTPS listener needs an issued certificate"
    # Destroy: the ALB (with the listener using the certificate) goes before the certificate, or ACM refuses.
    assert prod.deleted_before(ingress, certificate)


def test_prod_points_its_host_name_at_the_alb_and_removes_the_record_before_the_alb(prod):
    record = prod.one(RECORD, "clinic-prod-apps-dns")
    ingress = clinic_ingress(prod)
    assert (record.inputs["name"], record.inputs["zoneId"]) == ("clinic.example.org", "Z0123456789EXAMPLE")
    alias = record.inputs["aliases"][0]
    assert alias["name"] == ingress.state["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert alias["zoneId"] == "Z32O12XQLNTSW2", "the ALB's canonical zone, looked up once the ALB exists"
    assert prod.deleted_before(record, ingress), "no record is left pointing at a deleted ALB's name"


def test_dev_may_stay_on_http(dev):
    annotations = clinic_ingress(dev).inputs["metadata"]["annotations"]
    assert json.loads(annotations["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}]
    assert not dev.of_type(CERTIFICATE) and not dev.of_type(RECORD)


def test_nothing_in_clinic_apps_skips_its_delete(stack):
    component = stack.one("clinic:index:ClinicApps")
    for resource in stack.descendants(component):
        assert not resource.deleted_with and not resource.retain_on_delete, resource.name


def test_no_secret_value_in_any_env_literal_config_map_or_output(stack):
    literals = []
    for resource in stack.records:
        if resource.type in (DEPLOYMENT, JOB):
            for container in resource.inputs["spec"]["template"]["spec"]["containers"]:
                literals += [e.get("value", "") for e in container.get("env", [])]
                for env in container.get("env", []):
                    if any(w in env["name"] for w in ("SECRET", "PASSWORD", "TOKEN")) and "value" in env:
                        assert env["name"].endswith("_ARN"), f"{resource.name} sets {env['name']} as a literal"
        if resource.type == "kubernetes:core/v1:ConfigMap":
            literals += list((resource.inputs.get("data") or {}).values())
    exported = json.dumps({k: v for k, (v, _) in stack.exports.items()})
    assert GENERATED_SECRET not in json.dumps(literals) and GENERATED_SECRET not in exported
    jwt = next(s for s in stack.of_type("kubernetes:core/v1:Secret") if s.name.endswith("api-jwt"))
    data = jwt.inputs["stringData"]
    assert data[rpc._special_sig_key] == rpc._special_secret_sig, "the key stays a Pulumi secret (encrypted in state)"
    assert data["value"]["jwt-secret"] == GENERATED_SECRET, "the key reaches the pods only as a Kubernetes Secret"
    data_key = next(s for s in stack.of_type("kubernetes:core/v1:Secret") if s.name.endswith("api-data-key"))
    data = data_key.inputs["stringData"]
    assert data[rpc._special_sig_key] == rpc._special_secret_sig and data["value"]["data-key"] == GENERATED_SECRET
    api = next(d for d in stack.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "clinic-api")
    env = {e["name"]: e for e in api.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CLINIC_PRIVACY__DATA_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "clinic-api-data-key", "key": "data-key"}
    }


def test_the_data_key_every_stored_cpf_depends_on_is_protected_in_prod_only(dev, prod):
    for graph, protected in ((dev, False), (prod, True)):
        keys = [r for r in graph.of_type("random:index/randomPassword:RandomPassword") if r.name.endswith("data-key")]
        assert [k.protect for k in keys] == [protected], [k.name for k in keys]


def test_network_policies_deny_by_default_and_open_only_what_each_app_needs(stack):
    policies = {
        p.inputs["metadata"]["name"]: p.inputs["spec"]
        for p in stack.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    for app in ("clinic-api", "clinic-notifier", "clinic-file-processor", "clinic-migrate"):
        ports = sorted({p["port"] for rule in policies[app]["egress"] for p in rule["ports"]})
        assert ports == [53, 443, 5432], app
    for worker in ("clinic-notifier", "clinic-file-processor"):
        [rule] = policies[worker]["ingress"]
        assert [p["port"] for p in rule["ports"]] == [8080], "Prometheus scrapes it; nothing else reaches it"
        assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_autoscaler_and_disruption_budgets(dev, prod):
    for graph, low, high in ((dev, 1, 3), (prod, 3, 12)):
        hpa = graph.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
        assert (hpa.inputs["spec"]["minReplicas"], hpa.inputs["spec"]["maxReplicas"]) == (low, high)
        assert len(graph.of_type("kubernetes:policy/v1:PodDisruptionBudget")) == 3


def test_the_metrics_endpoint_is_not_published_through_the_alb(stack):
    ingress = clinic_ingress(stack)
    paths = ingress.inputs["spec"]["rules"][0]["http"]["paths"]
    assert paths[0]["path"] == "/metrics", "the more specific rule comes first"
    backend = paths[0]["backend"]["service"]
    assert backend["port"] == {"name": "use-annotation"}
    action = json.loads(
        ingress.inputs["metadata"]["annotations"][f"alb.ingress.kubernetes.io/actions.{backend['name']}"]
    )
    assert action["type"] == "fixed-response" and action["fixedResponseConfig"]["statusCode"] == "404"
    assert paths[-1]["path"] == "/" and paths[-1]["backend"]["service"]["name"] == "clinic-api"


def test_every_pod_uses_the_pool_size_and_surge_the_stack_connection_budget_counts(stack):
    """stacks/settings.py refuses replicas whose connections would pass the alarm; that holds only if the pods use
    the pool size it assumes and a rollout adds one pod at a time."""
    from limits import APP_DB_POOL_SIZE, FILE_PROCESSOR_DB_POOL_SIZE

    for name, spec in pod_specs(stack):
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        sizes = [value for key, value in env.items() if key.endswith("_DATABASE__POOL_SIZE")]
        expected = FILE_PROCESSOR_DB_POOL_SIZE if "file-processor" in name else APP_DB_POOL_SIZE
        assert sizes == [str(expected)], name
    for deployment in stack.of_type(DEPLOYMENT):
        if deployment.inputs["metadata"].get("namespace") == "clinic":
            assert deployment.inputs["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 1, deployment.name


def test_rollout_numbers_line_up_so_no_request_is_dropped_behind_the_alb():
    c = clinic_apps
    # The API keeps serving until the controller has deregistered it and the ALB has drained it.
    assert c.API_PRESTOP_SECONDS >= c.DEREGISTRATION_LAG_SECONDS + c.DEREGISTRATION_DELAY_SECONDS
    # SIGTERM comes after the preStop wait; the app drains and stops before the kubelet's SIGKILL.
    assert c.API_GRACE_SECONDS > c.API_PRESTOP_SECONDS + c.API_DRAIN_SECONDS + c.API_STOP_SECONDS
    # The notifier (no load balancer) finishes the long poll in flight and its batch before the SIGKILL; the
    # notifier itself refuses a shutdown timeout under its wait + 10 s.
    assert c.NOTIFIER_SHUTDOWN_SECONDS >= c.NOTIFIER_WAIT_SECONDS + 10
    assert c.NOTIFIER_GRACE_SECONDS > c.NOTIFIER_SHUTDOWN_SECONDS


def test_pods_ingress_and_namespace_carry_the_rollout_numbers(stack):
    c = clinic_apps
    namespace = next(
        n for n in stack.of_type("kubernetes:core/v1:Namespace") if n.inputs["metadata"]["name"] == "clinic"
    )
    assert namespace.inputs["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
    annotations = clinic_ingress(stack).inputs["metadata"]["annotations"]
    assert (
        annotations["alb.ingress.kubernetes.io/target-group-attributes"]
        == f"deregistration_delay.timeout_seconds={c.DEREGISTRATION_DELAY_SECONDS}"
    )
    pods = {
        d.inputs["metadata"]["name"]: d.inputs["spec"]["template"]["spec"]
        for d in stack.of_type(DEPLOYMENT)
        if d.inputs["metadata"].get("namespace") == "clinic"
    }
    api, notifier = pods["clinic-api"], pods["clinic-notifier"]
    assert api["containers"][0]["lifecycle"] == {"preStop": {"sleep": {"seconds": c.API_PRESTOP_SECONDS}}}
    assert api["terminationGracePeriodSeconds"] == c.API_GRACE_SECONDS
    drain = {"name": "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN", "value": str(c.API_DRAIN_SECONDS)}
    assert drain in api["containers"][0]["env"]
    assert "lifecycle" not in notifier["containers"][0], "nothing routes to the notifier: no reason to wait"
    assert notifier["terminationGracePeriodSeconds"] == c.NOTIFIER_GRACE_SECONDS
    env = {e["name"]: e["value"] for e in notifier["containers"][0]["env"] if "value" in e}
    assert env["NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS"] == str(c.NOTIFIER_SHUTDOWN_SECONDS)
    assert env["NOTIFIER_WAIT_SECONDS"] == str(c.NOTIFIER_WAIT_SECONDS)


def test_the_api_puts_the_clinics_host_name_in_emailed_links(prod, dev):
    def public_url(graph) -> str:
        api = next(d for d in graph.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "clinic-api")
        env = {e["name"]: e.get("value") for e in api.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["CLINIC_PUBLIC_URL"]

    assert public_url(prod) == "https://clinic.example.org", "prod's apps.hostname, with its issued certificate"
    assert public_url(dev) == "http://dev.clinic.example.org", "dev's ALB has no certificate: links over HTTP"


def test_the_component_refuses_to_email_links_without_a_host_name():
    from components.clinic_apps import public_url

    assert public_url("clinic.example.org", https=True) == "https://clinic.example.org"
    with pytest.raises(ValueError, match=r"hostname = None is invalid; allowed: the clinic's public host name"):
        public_url(None, https=True)


def test_the_prestop_sleep_action_is_on_in_every_kubernetes_version_the_stacks_allow():
    """The kubelet's sleep action is beta and on by default from 1.30 (GA in 1.34)."""
    from stacks.settings import KUBERNETES_VERSIONS

    assert all(tuple(map(int, v.split("."))) >= (1, 30) for v in KUBERNETES_VERSIONS), KUBERNETES_VERSIONS


def test_the_hpa_owns_the_api_replicas_once_the_deployment_exists(stack):
    """With server-side apply, re-sending `replicas` after the HPA has scaled conflicts with it (or resets it):
    the API's Deployment sets the HPA's minimum at creation only; the notifier's count stays Pulumi's."""
    hpa = stack.one("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    deployments = {
        d.inputs["metadata"]["name"]: d
        for d in stack.of_type(DEPLOYMENT)
        if d.inputs["metadata"].get("namespace") == "clinic"
    }
    assert hpa.inputs["spec"]["scaleTargetRef"]["name"] == "clinic-api"
    assert deployments["clinic-api"].ignore_changes == ["spec.replicas"]
    assert deployments["clinic-api"].inputs["spec"]["replicas"] == hpa.inputs["spec"]["minReplicas"]
    assert deployments["clinic-notifier"].ignore_changes == []


def test_the_notifier_accepts_the_shutdown_numbers_its_deployment_sets(prod, monkeypatch):
    """The notifier's own settings (apps/notifier/settings.py) refuse a shutdown timeout shorter than a long poll
    plus a batch: build them from exactly the environment the platform gives the pod."""
    from notifier.settings import NotifierSettings

    notifier = next(d for d in prod.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "clinic-notifier")
    for env in notifier.inputs["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in env:
            monkeypatch.setenv(env["name"], env["value"])
    settings = NotifierSettings()
    assert (settings.wait_seconds, settings.shutdown_timeout_seconds) == (
        clinic_apps.NOTIFIER_WAIT_SECONDS,
        clinic_apps.NOTIFIER_SHUTDOWN_SECONDS,
    )
    monkeypatch.setenv("NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS", str(clinic_apps.NOTIFIER_WAIT_SECONDS))
    with pytest.raises(ValueError, match="NOTIFIER_SHUTDOWN_TIMEOUT_SECONDS"):
        NotifierSettings()


def test_the_api_image_lets_the_pod_set_its_drain_time():
    """uvicorn reads UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN from the environment unless the command line sets it."""
    from pathlib import Path

    dockerfile = (Path(__file__).parents[2] / "apps" / "clinic_api" / "Dockerfile").read_text()
    command = dockerfile.split("\nCMD ", 1)[1]
    assert "uvicorn" in command and "--timeout-graceful-shutdown" not in command


def test_a_hosted_zone_without_a_host_name_is_refused_naming_it():
    with pytest.raises(
        ValueError, match="hosted_zone_id = 'Z0123' is invalid without a hostname; allowed: set hostname"
    ):
        clinic_apps.validate_dns(None, "Z0123")
    clinic_apps.validate_dns("clinic.example.org", "Z0123")
    clinic_apps.validate_dns(None, None)


def test_the_api_keeps_schedules_on_the_clinics_time_zone(prod):
    api = next(d for d in prod.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "clinic-api")
    env = {e["name"]: e.get("value") for e in api.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CLINIC_AGENDA__TIME_ZONE"] == "America/Sao_Paulo", "apps.timeZone's default"


def test_an_unknown_time_zone_is_refused_before_a_rollout_would_crash_loop():
    with pytest.raises(ValueError, match=r"time_zone = 'Brazil/Nowhere' is invalid; allowed: an IANA time zone"):
        clinic_apps.validate_time_zone("Brazil/Nowhere")
    clinic_apps.validate_time_zone("America/Manaus")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_portal_keeps_secure_cookies_in_the_cluster(stack, request):
    """The portal's session cookie is Secure with the __Host- prefix unless CLINIC_WEB__SECURE_COOKIES says otherwise
    (only apps/run_local.py, over plain http on one's machine): the cluster never says so."""
    graph = request.getfixturevalue(stack)
    api = next(d for d in graph.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "clinic-api")
    names = {e["name"] for e in api.inputs["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "CLINIC_WEB__SECURE_COOKIES" not in names
    assert "CLINIC_ENVIRONMENT" in names  # the env was read (a renamed key would make the check above vacuous)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_api_accepts_the_settings_the_cluster_gives_it(stack, request, monkeypatch):
    """The API refuses to start outside development on settings that would fail later (a placeholder secret, a
    loopback CLINIC_PUBLIC_URL that every emailed link would be built on): the cluster's env passes those checks,
    so a rollout does not crash-loop on them."""
    from clinic_api.settings import Settings

    graph = request.getfixturevalue(stack)
    api = next(d for d in graph.of_type(DEPLOYMENT) if d.inputs["metadata"]["name"] == "clinic-api")
    for entry in api.inputs["spec"]["template"]["spec"]["containers"][0]["env"]:
        # Secrets come from Kubernetes Secrets the stack generates (32+ random characters); stand-ins of that size.
        monkeypatch.setenv(entry["name"], entry["value"] if "value" in entry else "s" * 48)
    settings = Settings()
    assert settings.environment == "production"
    assert settings.public_url.startswith("http") and "127.0.0.1" not in settings.public_url
