"""Telemedicine on the recorded graph: prod (on by default), dev enabled with a zone, dev disabled. Jitsi cannot run
here; what the graph shows (hardening, secrets, the NLB's addresses, teardown order) is checked, the rest was read
against docker-jitsi-meet stable-11146-2 and the load balancer controller's docs (README "Telemedicine")."""

import json

import pytest

from components import telemedicine
from preview.costs import cost_lines
from stacks.settings import StackSettingsError, load_settings
from tests.infra.pulumi_mocks import GENERATED_SECRET, Graph, evaluate_program, stack_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
INGRESS = "kubernetes:networking.k8s.io/v1:Ingress"
RELEASE = "kubernetes:helm.sh/v3:Release"
EIP = "aws:ec2/eip:Eip"
DEV_WITH_VIDEO = {
    "clinic-platform:apps": {"apiReplicas": 1, "hostname": "dev.clinic.example.org", "hostedZoneId": "Z0DEVZONE"},
    "clinic-platform:telemedicine": {"enabled": True},
}


@pytest.fixture(scope="module")
def dev_video() -> Graph:
    return evaluate_program("dev", DEV_WITH_VIDEO)


@pytest.fixture(params=["prod", "dev-enabled"])
def video(request, prod, dev_video) -> Graph:
    return prod if request.param == "prod" else dev_video


def jitsi_pods(graph: Graph):
    deployments = [d for d in graph.of_type(DEPLOYMENT) if d.input("metadata", "namespace") == "telemedicine"]
    assert sorted(d.input("metadata", "name") for d in deployments) == ["jicofo", "jvb", "prosody", "web"]
    return deployments


def video_base(graph: Graph) -> str:
    return graph.one("aws:ec2/vpc:Vpc").name.removesuffix("-network-vpc")


def media_service(graph: Graph):
    return next(s for s in graph.of_type(SERVICE) if s.name.endswith("telemedicine-jvb-media"))


def media_eips(graph: Graph):
    return sorted((e for e in graph.of_type(EIP) if "media-eip" in e.name), key=lambda e: e.name)


def env_of(deployment, container: str = "") -> dict:
    containers = deployment.input("spec", "template", "spec", "containers")
    found = next(c for c in containers if not container or c["name"] == container)
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in found["env"]}


def test_every_jitsi_pod_meets_the_restricted_standard_the_clinic_pods_meet(video):
    namespace = next(n for n in video.of_type("kubernetes:core/v1:Namespace") if n.name.endswith("telemedicine-ns"))
    assert namespace.input("metadata", "labels")["pod-security.kubernetes.io/enforce"] == "restricted"
    for deployment in jitsi_pods(video):
        spec = deployment.input("spec", "template", "spec")
        assert spec["securityContext"]["runAsNonRoot"] is True, deployment.name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, deployment.name
        assert spec["automountServiceAccountToken"] is False, deployment.name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, deployment.name
            assert security["readOnlyRootFilesystem"] is True, deployment.name
            assert security["capabilities"] == {"drop": ["ALL"]}, deployment.name
            # The images name their user (`s6`), which the kubelet cannot check as non-root: a number is required.
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, deployment.name
            assert container["resources"]["requests"] == container["resources"]["limits"], deployment.name
            assert "@sha256:" in container["image"], deployment.name


def test_images_are_pinned_by_digest_and_moving_tags_are_refused():
    telemedicine.validate_images(telemedicine.IMAGES)
    for bad in ("ghcr.io/jitsi/web:stable-11146-2", "ghcr.io/jitsi/web:latest@sha256:" + "a" * 64):
        with pytest.raises(ValueError, match="image web = .* is invalid; allowed"):
            telemedicine.validate_images({"web": bad})


def test_the_nlb_gets_one_elastic_ip_per_public_subnet_which_the_bridge_and_turn_advertise(video):
    service = media_service(video)
    annotations = service.input("metadata", "annotations")
    prefix = "service.beta.kubernetes.io/aws-load-balancer"
    subnets = sorted((s for s in video.of_type("aws:ec2/subnet:Subnet") if "-public-" in s.name), key=lambda s: s.name)
    eips = media_eips(video)
    assert len(eips) == len(subnets) >= 2
    assert annotations[f"{prefix}-subnets"].split(",") == [f"{s.name}-id" for s in subnets]
    assert annotations[f"{prefix}-eip-allocations"].split(",") == [e.state["allocationId"] for e in eips]
    assert annotations[f"{prefix}-nlb-target-type"] == "ip"
    assert annotations[f"{prefix}-scheme"] == "internet-facing"
    assert annotations[f"{prefix}-attributes"] == "load_balancing.cross_zone.enabled=true"
    spec = service.input("spec")
    assert (spec["type"], spec["loadBalancerClass"]) == ("LoadBalancer", "service.k8s.aws/nlb")
    assert {(p["protocol"], p["port"]) for p in spec["ports"]} == {("UDP", 10000), ("TCP", 443)}
    addresses = ",".join(e.state["publicIp"] for e in eips)
    jvb = next(d for d in jitsi_pods(video) if d.input("metadata", "name") == "jvb")
    prosody = next(d for d in jitsi_pods(video) if d.input("metadata", "name") == "prosody")
    assert env_of(jvb, "jvb")["JVB_ADVERTISE_IPS"] == addresses
    assert env_of(prosody)["TURN_HOST"] == addresses
    assert video.exports["telemedicineMediaAddresses"][0] == [e.state["publicIp"] for e in eips]


def test_a_count_of_addresses_other_than_the_subnets_is_refused():
    with pytest.raises(ValueError, match="media_allocation_ids has 1 entries for 2 public subnets"):
        telemedicine.media_annotations(["subnet-a", "subnet-b"], ["eipalloc-a"], {})


def test_rooms_need_a_token_signed_with_the_secret_the_api_gets_and_no_secret_is_written_out(video):
    prosody = next(d for d in jitsi_pods(video) if d.input("metadata", "name") == "prosody")
    env = env_of(prosody)
    assert (env["ENABLE_AUTH"], env["AUTH_TYPE"], env["ENABLE_GUESTS"], env["JWT_ALLOW_EMPTY"]) == (
        "1",
        "jwt",
        "0",
        "0",
    )
    assert env["JWT_APP_SECRET"] == {"secretKeyRef": {"name": "jitsi", "key": "jwt-app-secret"}}
    assert (env["JWT_ACCEPTED_ISSUERS"], env["JWT_ACCEPTED_AUDIENCES"]) == ("clinic", "jitsi")
    api = next(d for d in video.of_type(DEPLOYMENT) if d.input("metadata", "name") == "clinic-api")
    api_env = env_of(api)
    assert api_env["CLINIC_TELEMEDICINE_BASE_URL"].startswith("https://meet.")
    assert api_env["CLINIC_TELEMEDICINE__JWT_SECRET"] == {
        "secretKeyRef": {"name": "clinic-api-telemedicine", "key": "jwt-secret"}
    }
    (jwt_password,) = [r for r in video.records if r.name.endswith("telemedicine-jwt-secret")]
    api_secret = next(r for r in video.records if r.name.endswith("apps-api-telemedicine"))
    assert video.depends_on(api_secret, jwt_password), "the API's copy comes from the secret prosody verifies with"
    assert video.depends_on(api, api_secret), "API pods start only once the Secret they read exists"
    for record in video.records:
        if record.type == "kubernetes:core/v1:Secret":
            continue
        assert GENERATED_SECRET not in json.dumps(record.inputs, default=str), record.name
    assert GENERATED_SECRET not in json.dumps({k: v for k, (v, _) in video.exports.items()}, default=str)


def test_the_web_shares_the_clinic_alb_on_its_own_host_over_https(video):
    ingresses = {i.name.rsplit("-", 2)[-2]: i for i in video.of_type(INGRESS)}
    clinic, jitsi = ingresses["apps"], ingresses["telemedicine"]
    group = "alb.ingress.kubernetes.io/group.name"
    assert clinic.input("metadata", "annotations")[group] == jitsi.input("metadata", "annotations")[group]
    annotations = jitsi.input("metadata", "annotations")
    assert annotations["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert annotations["alb.ingress.kubernetes.io/certificate-arn"]
    rule = jitsi.input("spec", "rules")[0]
    assert rule["host"].startswith("meet.") and rule["host"] != clinic.input("spec", "rules")[0].get("host")


def test_network_policies_deny_by_default_and_open_only_what_jitsi_needs(video):
    policies = {
        p.input("metadata", "name"): p.input("spec")
        for p in video.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
        if p.input("metadata", "namespace") == "telemedicine"
    }
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    prosody_in = policies["prosody"]["ingress"]
    assert {(f["podSelector"]["matchLabels"]["app"]) for f in prosody_in[0]["from"]} == {"jicofo", "jvb"}
    assert prosody_in[0]["ports"] == [{"protocol": "TCP", "port": 5222}]
    assert prosody_in[1]["from"][0]["podSelector"]["matchLabels"]["app"] == "web"
    assert prosody_in[1]["ports"] == [{"protocol": "TCP", "port": 5280}]
    assert policies["jicofo"]["ingress"] == []
    jvb_in = policies["jvb"]["ingress"]
    assert jvb_in[0] == {"ports": [{"protocol": "UDP", "port": 10000}]}, "media from any browser"
    assert [p["port"] for p in jvb_in[1]["ports"]] == [3478, 8080] and "ipBlock" in jvb_in[1]["from"][0]
    assert [p["port"] for p in policies["web"]["ingress"][0]["ports"]] == [8000]


def test_destroy_deletes_the_media_service_before_the_controller_and_frees_the_addresses_after_the_janitor(video):
    service, release = media_service(video), next(r for r in video.of_type(RELEASE) if "lb-controller" in r.name)
    cluster, janitor = (
        video.one("eks:index:Cluster"),
        video.one("pulumi-python:dynamic:Resource", f"{video_base(video)}-lb-janitor"),
    )
    order = [r.urn for r in video.delete_order()]

    def before(first, then):
        assert video.deleted_before(first, then), f"{first.name} must be deleted before {then.name}"
        assert order.index(first.urn) < order.index(then.urn), f"{then.name} is deleted before {first.name}"

    before(service, release)
    for group in video.of_type("aws:eks/nodeGroup:NodeGroup"):
        before(release, group)
        before(group, cluster)
    before(cluster, janitor)
    vpc = video.one("aws:ec2/vpc:Vpc")
    for eip in media_eips(video):
        before(janitor, eip)  # the NLB's interfaces are gone by then: the address can be released
    for subnet in video.of_type("aws:ec2/subnet:Subnet"):
        before(janitor, subnet)
        before(subnet, vpc)
    assert not service.deleted_with and not service.retain_on_delete


def test_dev_leaves_it_off_and_allocates_no_address(dev):
    assert not [r for r in dev.records if "telemedicine" in r.name]
    assert not media_eips(dev)
    api = next(d for d in dev.of_type(DEPLOYMENT) if d.input("metadata", "name") == "clinic-api")
    assert "CLINIC_TELEMEDICINE_BASE_URL" not in env_of(api)


def test_the_preview_prices_the_nlb_and_its_addresses(prod):
    lines = [line for line in cost_lines(prod) if line.resource.endswith("jvb-media") or "media-eip" in line.resource]
    items = sorted(line.item for line in lines)
    assert items == ["NLB"] + ["public IPv4 address"] * 3, items
    assert sum(line.monthly_usd for line in lines) == pytest.approx((0.0252 + 3 * 0.005) * 730, abs=0.05)


def raw(stack: str, **groups) -> dict:
    config = {
        k.split(":", 1)[1]: json.loads(v) if v[:1] in "[{" else v
        for k, v in stack_config(stack).items()
        if k.startswith("clinic-platform:")
    }
    return {**config, **groups}


@pytest.mark.parametrize(
    ("groups", "problem"),
    [
        ({"telemedicine": {"jvbReplicas": 2}}, "telemedicine.jvbReplicas = 2 is invalid; allowed: 1: a videobridge"),
        ({"telemedicine": {"jvbCpuMillis": 100}}, "telemedicine.jvbCpuMillis = 100 is invalid"),
        ({"telemedicine": {"hostname": "clinic.example.org"}}, "telemedicine.hostname = 'clinic.example.org' is"),
        ({"telemedicine": {"hostname": "Meet!"}}, "telemedicine.hostname = 'Meet!' is invalid"),
    ],
)
def test_bad_values_are_refused_naming_the_key(groups, problem):
    with pytest.raises(StackSettingsError) as error:
        load_settings(raw("prod", **groups), stack="prod", region="eu-west-1")
    assert any(p.startswith(problem) for p in error.value.problems), error.value.problems


def test_dev_cannot_turn_it_on_without_https():
    with pytest.raises(StackSettingsError) as error:
        load_settings(raw("dev", telemedicine={"enabled": True}), stack="dev", region="eu-west-1")
    # Its host name defaults to meet.<apps.hostname>; the ALB has no certificate.
    assert [p.split(" = ")[0] for p in error.value.problems] == ["apps.certificateArn"]


def test_turn_relays_only_to_the_bridge_in_its_own_pod(prod):
    """An open TURN relay in the VPC would let anyone on the internet reach the clinic's private addresses."""
    jvb = next(d for d in jitsi_pods(prod) if d.input("metadata", "name") == "jvb")
    turn = next(c for c in jvb.input("spec", "template", "spec", "containers") if c["name"] == "turn")
    assert turn["args"] == ["-c", "/etc/coturn/turnserver.conf", "--allowed-peer-ip=$(POD_IP)"]
    assert turn["env"] == [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    config = telemedicine.turn_config("s3cret", "meet.clinic.example.org").splitlines()
    assert {"denied-peer-ip=0.0.0.0-255.255.255.255", "use-auth-secret", "no-udp", "no-cli"} <= set(config)
    assert "static-auth-secret=s3cret" in config


def test_a_videobridge_pod_that_fits_on_no_node_is_refused():
    with pytest.raises(StackSettingsError) as error:
        load_settings(raw("prod", telemedicine={"jvbCpuMillis": 2000}), stack="prod", region="eu-west-1")
    (problem,) = error.value.problems
    assert problem.startswith(
        "telemedicine.jvbCpuMillis = '2000 (jvbMemoryMib 3072)' is invalid; allowed: at most 1130"
    )
    assert load_settings(raw("prod", telemedicine={"jvbCpuMillis": 1100}), stack="prod", region="eu-west-1")


def test_the_api_reads_the_room_settings_the_platform_gives_it(prod, monkeypatch):
    """The names the platform sets are the API's own settings, with the values Jitsi checks."""
    from clinic_api.settings import Settings

    api = next(d for d in prod.of_type(DEPLOYMENT) if d.input("metadata", "name") == "clinic-api")
    for name, value in env_of(api).items():
        if name.startswith("CLINIC_TELEMEDICINE"):
            monkeypatch.setenv(
                name, value if isinstance(value, str) else "a-generated-secret-of-48-characters-0123456789ab"
            )
    settings = Settings()
    assert settings.telemedicine_base_url == "https://meet.clinic.example.org"
    video = settings.telemedicine
    assert (video.app_id, video.audience, video.domain) == (
        telemedicine.JWT_APP_ID,
        telemedicine.JWT_AUDIENCE,
        telemedicine.XMPP_DOMAIN,
    )
    assert video.jwt_secret is not None


def test_prod_may_turn_it_off_and_then_keeps_its_alb_as_it_was():
    graph = evaluate_program("prod", {"clinic-platform:telemedicine": {"enabled": False}})
    assert not [r for r in graph.records if "telemedicine" in r.name]
    assert not media_eips(graph) and "telemedicineUrl" not in graph.exports
    (ingress,) = graph.of_type(INGRESS)
    assert "alb.ingress.kubernetes.io/group.name" not in ingress.input("metadata", "annotations"), (
        "without a video host the clinic's Ingress stays outside any IngressGroup (no ALB replacement)"
    )
