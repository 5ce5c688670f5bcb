"""Telemedicine: Jitsi Meet for the clinic's video visits — web, prosody (XMPP), jicofo (focus) and the videobridge
with a TURN relay beside it — in its own restricted namespace. Web and signalling ride the clinic's ALB (its own host
name in the clinic's IngressGroup, HTTPS only); media go through an NLB the load balancer controller creates for a
`LoadBalancer` Service, on Elastic IPs the Network allocates, which the videobridge advertises as its own address.

Rooms are a secure domain: prosody accepts only tokens signed with a secret this component generates, which the API
also receives (ClinicApps puts it in the API's namespace), so only the API can let someone into a room."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.clinic_apps import issued_certificate
from components.cluster import Cluster
from components.lb_controller import NLB_LOAD_BALANCER_CLASS, LoadBalancerController
from limits.capacity import TURN_SIDECAR

NAMESPACE = "telemedicine"
# The XMPP domain inside the cluster (docker-jitsi-meet's default). A token's `sub` names it.
XMPP_DOMAIN = "meet.jitsi"
# What prosody's token_verification checks: `iss` among the accepted issuers (and the app id), `aud` among the
# accepted audiences. The API signs with these (CLINIC_TELEMEDICINE__*).
JWT_APP_ID = "clinic"
JWT_AUDIENCE = "jitsi"
WEB_PORT = 8000  # the web image's nginx, plain HTTP behind the ALB (the image listens on 8000/8443 as a non-root user)
PROSODY_C2S_PORT = 5222  # jicofo and the videobridge log in here
PROSODY_HTTP_PORT = 5280  # BOSH and the XMPP websocket, proxied by the web pods
JVB_MEDIA_PORT = 10000  # UDP: every browser's media
JVB_HEALTH_PORT = 8080  # colibri REST: /about/health, what the NLB health-checks
TURN_PORT = 3478  # coturn in the videobridge's pod, TCP only
TURN_PUBLIC_PORT = 443  # what strict networks let out; the NLB maps it to TURN_PORT
TURN_RELAY_PORTS = (49152, 49251)  # coturn's relay ports, used only towards the bridge in the same pod
# Images run as the `s6` user the Jitsi base image adds (`adduser`, the first user on Debian: uid/gid 1000), with
# s6-overlay's S6_READ_ONLY_ROOT; coturn's image runs as nobody (65534).
JITSI_UID = 1000
COTURN_UID = 65534
# Pinned by digest. Jitsi stable-11146-2 (docker-jitsi-meet release of 2026-08-17); coturn 4.17.2-r0-debian. The
# digests were taken from a public deploy record of these exact tags (`docker inspect` RepoDigests), not read from
# the registries from this machine (which reach neither ghcr.io nor Docker Hub): check them with
# `crane digest ghcr.io/jitsi/web:stable-11146-2` before the first `pulumi up`, and move tag and digest together.
IMAGES: dict[str, str] = {
    "web": "ghcr.io/jitsi/web:stable-11146-2@sha256:4231d5ff7318ff71d12ffd41afc36adae3c319b40cf79cde39b009b0c68295dc",
    "prosody": (
        "ghcr.io/jitsi/prosody:stable-11146-2@sha256:9e341b10134d947e49ca338b9efe8d70ac9d6e8d89d621da2246dfa79fe50363"
    ),
    "jicofo": (
        "ghcr.io/jitsi/jicofo:stable-11146-2@sha256:a8d64e46eaa340751a2b5530a4abd4175adf05bff07e9775fc48daae6364cfe9"
    ),
    "jvb": "ghcr.io/jitsi/jvb:stable-11146-2@sha256:d7dc646d21af07530ae6acf1ace23ea4782445d0362004621a32a5a632a964e9",
    "coturn": (
        "docker.io/coturn/coturn:4.17.2-r0-debian@sha256:aa68aab64a3b929d57fc2924c98ea447bf996cf8dade2508e7b71eaf23f1f14e"
    ),
}
MOVING_TAGS = ("latest", "stable", "unstable", "edge")
# The media NLB: UDP and TCP listeners, IP targets (pods), cross-zone so every Elastic IP reaches the one bridge.
NLB_HEALTH_PATH = "/about/health"


@dataclass(frozen=True)
class TelemedicineArgs:
    cluster: Cluster
    """The cluster (Kubernetes provider)."""
    controller: LoadBalancerController
    """The load balancer controller the Ingress and the media Service are ordered after."""
    hostname: str
    """Public host name of the video service (a rule of its own on the clinic's ALB)."""
    alb_group: str
    """The clinic's IngressGroup: the video service's Ingress joins its ALB."""
    public_subnet_ids: pulumi.Input[Sequence[str]]
    """Public subnets the media NLB sits in, one per AZ."""
    media_allocation_ids: pulumi.Input[Sequence[str]]
    """One Elastic IP allocation per public subnet, in the same order."""
    media_public_ips: pulumi.Input[Sequence[str]]
    """Their addresses: what the videobridge and TURN advertise to browsers."""
    vpc_cidr: str
    """VPC CIDR (the ALB, the NLB's health checks and its TCP listener reach pods from inside it)."""
    certificate_arn: pulumi.Input[str] | None = None
    """ACM certificate for the host name (HTTPS on the clinic's ALB); None issues one in hosted_zone_id."""
    hosted_zone_id: str | None = None
    """Route 53 zone holding the host name: its record (a CNAME to the ALB) and, without a certificate ARN, the
    certificate's validation record go there."""
    jvb_replicas: int = 1
    """Videobridges behind the NLB (1: each advertises the NLB's addresses as its own)."""
    jvb_cpu_millis: int = 1000
    """CPU request and limit of the videobridge, millicores."""
    jvb_memory_mib: int = 2048
    """Memory request and limit of the videobridge, MiB."""
    web_replicas: int = 2
    """Web (nginx) replicas behind the ALB."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for what the controller creates in AWS (the NLB, its target groups)."""


def validate_images(images: Mapping[str, str]) -> None:
    """Every image by digest, never a moving tag: a rollout must run exactly what was reviewed."""
    for role, image in images.items():
        name, _, digest = image.partition("@")
        tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else ""
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest) or tag in MOVING_TAGS or not tag:
            raise ValueError(
                f"image {role} = {image!r} is invalid; allowed: <registry>/<repository>:<release tag>@sha256:<64 hex> "
                f"(never {', '.join(MOVING_TAGS)})"
            )


def validate_telemedicine_args(args: TelemedicineArgs) -> None:
    if args.jvb_replicas != 1:
        raise ValueError(
            f"jvb_replicas = {args.jvb_replicas} is invalid; allowed: 1 (a bridge advertises the NLB's Elastic IPs "
            "as its own: a second one behind the same NLB would be sent media meant for the first)"
        )
    if not 500 <= args.jvb_cpu_millis <= 8000 or not 1024 <= args.jvb_memory_mib <= 16384:
        raise ValueError(
            f"jvb_cpu_millis = {args.jvb_cpu_millis}, jvb_memory_mib = {args.jvb_memory_mib} are invalid; allowed: "
            "500 to 8000 millicores and 1024 to 16384 MiB"
        )
    if args.certificate_arn is None and args.hosted_zone_id is None:
        raise ValueError(
            "certificate_arn and hosted_zone_id are both unset; allowed: a certificate for the host name, or its "
            "zone so one is issued (browsers give the camera and microphone only to HTTPS pages)"
        )
    if args.web_replicas < 1:
        raise ValueError(f"web_replicas = {args.web_replicas} is invalid; allowed: 1 or more")
    validate_images(IMAGES)


def media_annotations(
    subnet_ids: Sequence[str], allocation_ids: Sequence[str], tags: Mapping[str, str]
) -> dict[str, str]:
    """The NLB the controller creates for the media Service (docs/guide/service/annotations.md of the controller):
    internet-facing, pod IPs as targets, one Elastic IP per subnet — the controller refuses a count that differs
    from the subnets' — and cross-zone, so the address in every AZ reaches the one bridge wherever it runs."""
    if len(subnet_ids) != len(allocation_ids) or not subnet_ids:
        raise ValueError(
            f"media_allocation_ids has {len(allocation_ids)} entries for {len(subnet_ids)} public subnets; allowed: "
            "exactly one Elastic IP per subnet the NLB uses"
        )
    prefix = "service.beta.kubernetes.io/aws-load-balancer"
    return {
        f"{prefix}-nlb-target-type": "ip",
        f"{prefix}-scheme": "internet-facing",
        f"{prefix}-subnets": ",".join(subnet_ids),
        f"{prefix}-eip-allocations": ",".join(allocation_ids),
        f"{prefix}-attributes": "load_balancing.cross_zone.enabled=true",
        # UDP has no handshake to check: the bridge's own health endpoint answers for both listeners' targets.
        f"{prefix}-healthcheck-protocol": "http",
        f"{prefix}-healthcheck-port": str(JVB_HEALTH_PORT),
        f"{prefix}-healthcheck-path": NLB_HEALTH_PATH,
        f"{prefix}-additional-resource-tags": ",".join(f"{k}={v}" for k, v in sorted(tags.items())),
    }


def turn_config(secret: str, realm: str) -> str:
    """coturn's configuration: TCP only (the NLB's 443), TURN REST credentials from the secret prosody shares,
    and no relaying anywhere but to the bridge in the same pod (allowed-peer-ip is added on the command line, from
    the pod's IP): an open relay into the VPC would let anyone reach the clinic's private addresses."""
    return "\n".join(
        [
            f"listening-port={TURN_PORT}",
            "no-udp",
            "no-tls",
            "no-dtls",
            "fingerprint",
            "use-auth-secret",
            f"static-auth-secret={secret}",
            f"realm={realm}",
            f"min-port={TURN_RELAY_PORTS[0]}",
            f"max-port={TURN_RELAY_PORTS[1]}",
            "denied-peer-ip=0.0.0.0-255.255.255.255",
            "denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "no-multicast-peers",
            "no-cli",
            "no-software-attribute",
            "log-file=stdout",
            "simple-log",
            "",
        ]
    )


def _security(uid: int) -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
    }


def _resources(cpu: str, memory: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def _writable(*paths: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """emptyDirs for what the images write (docker-jitsi-meet runs them read-only with tmpfs /run and /tmp and a
    /config volume the entrypoint fills from templates at every start)."""
    volumes = [
        {"name": f"rw-{i}", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"} if p in ("/run", "/tmp") else {}}
        for i, p in enumerate(paths)
    ]
    mounts = [{"name": f"rw-{i}", "mountPath": p} for i, p in enumerate(paths)]
    return volumes, mounts


def _env(values: Mapping[str, pulumi.Input[str]], secrets: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    env += [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": "jitsi", "key": key}}} for k, key in (secrets or {}).items()
    ]
    return env


class Telemedicine(pulumi.ComponentResource):
    base_url: pulumi.Output[str]
    """https://<host name>: where rooms are (`<base_url>/<room>?jwt=<token>`)."""
    jwt_secret: pulumi.Output[str]
    """The secret prosody verifies room tokens with (a secret Output: for the API's Secret only)."""
    media_addresses: pulumi.Output[list[str]]
    """The Elastic IPs browsers send media to (UDP 10000) and reach TURN on (TCP 443)."""

    def __init__(self, name: str, args: TelemedicineArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Telemedicine", name, None, opts)
        validate_telemedicine_args(args)
        provider = args.cluster.provider
        public_url = f"https://{args.hostname}"

        namespace = k8s.core.v1.Namespace(
            f"{name}-ns",
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
            metadata={
                "name": NAMESPACE,
                "labels": {
                    # Every image runs as a non-root user with a read-only root: the restricted standard holds.
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest",
                    "pod-security.kubernetes.io/audit": "restricted",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "elbv2.k8s.aws/pod-readiness-gate-inject": "enabled",
                },
            },
        )
        in_ns = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace])
        # Services wait for the controller like every Service on the cluster (components/lb_controller.py).
        service_opts = pulumi.ResourceOptions(
            parent=self, provider=provider, depends_on=[namespace, *args.controller.ready]
        )

        def password(role: str) -> random.RandomPassword:
            return random.RandomPassword(
                f"{name}-{role}", length=48, special=False, opts=pulumi.ResourceOptions(parent=self)
            )

        jwt, jicofo, jvb, turn = (password(r) for r in ("jwt-secret", "jicofo-password", "jvb-password", "turn"))
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            opts=in_ns,
            type="Opaque",
            metadata={"name": "jitsi", "namespace": NAMESPACE},
            string_data={
                "jwt-app-secret": jwt.result,
                "jicofo-auth-password": jicofo.result,
                "jvb-auth-password": jvb.result,
                "turn-secret": turn.result,
                "turnserver.conf": turn.result.apply(lambda s: turn_config(s, args.hostname)),
            },
        )
        pods_after = pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[namespace, secret])

        prosody_host = f"prosody.{NAMESPACE}.svc.cluster.local"
        addresses = pulumi.Output.from_input(args.media_public_ips).apply(lambda ips: ",".join(ips))
        auth = {"ENABLE_AUTH": "1", "AUTH_TYPE": "jwt", "ENABLE_GUESTS": "0"}
        xmpp = {"XMPP_DOMAIN": XMPP_DOMAIN, "XMPP_SERVER": prosody_host, "PUBLIC_URL": public_url, "TZ": "UTC"}

        self._deployment(
            name,
            "prosody",
            pods_after,
            image=IMAGES["prosody"],
            env=_env(
                {
                    **auth,
                    **xmpp,
                    "JWT_APP_ID": JWT_APP_ID,
                    "JWT_ACCEPTED_ISSUERS": JWT_APP_ID,
                    "JWT_ACCEPTED_AUDIENCES": JWT_AUDIENCE,
                    "JWT_ALLOW_EMPTY": "0",
                    # The doctor's token says affiliation "owner" (moderator); nobody else becomes one by joining.
                    "XMPP_MUC_MODULES": "token_affiliation",
                    "ENABLE_XMPP_WEBSOCKET": "1",
                    "TURN_HOST": addresses,
                    "TURN_PORT": str(TURN_PUBLIC_PORT),
                    "TURN_TRANSPORT": "tcp",
                },
                {
                    "JWT_APP_SECRET": "jwt-app-secret",
                    "JICOFO_AUTH_PASSWORD": "jicofo-auth-password",
                    "JVB_AUTH_PASSWORD": "jvb-auth-password",
                    "TURN_CREDENTIALS": "turn-secret",
                },
            ),
            ports=[("xmpp-c2s", PROSODY_C2S_PORT, "TCP"), ("http", PROSODY_HTTP_PORT, "TCP")],
            writable=("/run", "/tmp", "/config", "/var/lib/prosody", "/prosody-plugins-custom"),
            cpu="250m",
            memory="512Mi",
            probe={"tcpSocket": {"port": PROSODY_C2S_PORT}},
        )
        prosody_service = k8s.core.v1.Service(
            f"{name}-prosody-svc",
            opts=service_opts,
            metadata={"name": "prosody", "namespace": NAMESPACE, "labels": {"app": "prosody"}},
            spec={
                "selector": {"app": "prosody"},
                "ports": [
                    {"name": "xmpp-c2s", "port": PROSODY_C2S_PORT, "targetPort": PROSODY_C2S_PORT},
                    {"name": "http", "port": PROSODY_HTTP_PORT, "targetPort": PROSODY_HTTP_PORT},
                ],
            },
        )
        after_prosody = pulumi.ResourceOptions(
            parent=self, provider=provider, depends_on=[namespace, secret, prosody_service]
        )
        self._deployment(
            name,
            "jicofo",
            after_prosody,
            image=IMAGES["jicofo"],
            env=_env(
                {**auth, **xmpp, "ENABLE_AUTO_OWNER": "false", "JICOFO_MAX_MEMORY": "768m"},
                {"JICOFO_AUTH_PASSWORD": "jicofo-auth-password"},
            ),
            ports=[],
            writable=("/run", "/tmp", "/config"),
            cpu="250m",
            memory="1Gi",
            probe=None,
        )
        # The JVM heap leaves a quarter of the container's memory to native buffers and the TURN sidecar.
        heap_mib = args.jvb_memory_mib * 3 // 4
        jvb_env = _env(
            {
                **xmpp,
                "JVB_PORT": str(JVB_MEDIA_PORT),
                "JVB_ADVERTISE_IPS": addresses,
                # The pod's own address too: the TURN relay beside it reaches the bridge there (an NLB does not
                # hairpin a target's traffic back to itself).
                "JVB_ADVERTISE_PRIVATE_CANDIDATES": "true",
                "DISABLE_AWS_HARVESTER": "true",
                "JVB_DISABLE_STUN": "true",
                "COLIBRI_REST_ENABLED": "true",
                "VIDEOBRIDGE_MAX_MEMORY": f"{heap_mib}m",
            },
            {"JVB_AUTH_PASSWORD": "jvb-auth-password"},
        )
        turn_container = {
            "name": "turn",
            "image": IMAGES["coturn"],
            "args": ["-c", "/etc/coturn/turnserver.conf", "--allowed-peer-ip=$(POD_IP)"],
            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "ports": [{"name": "turn", "containerPort": TURN_PORT, "protocol": "TCP"}],
            "securityContext": _security(COTURN_UID),
            "resources": _resources(TURN_SIDECAR.cpu, TURN_SIDECAR.memory),
            "readinessProbe": {"tcpSocket": {"port": TURN_PORT}, "periodSeconds": 10},
            "volumeMounts": [
                {"name": "turn-config", "mountPath": "/etc/coturn", "readOnly": True},
                {"name": "turn-db", "mountPath": "/var/lib/coturn"},
            ],
        }
        self._deployment(
            name,
            "jvb",
            after_prosody,
            image=IMAGES["jvb"],
            env=jvb_env,
            ports=[("media", JVB_MEDIA_PORT, "UDP"), ("colibri", JVB_HEALTH_PORT, "TCP")],
            writable=("/run", "/tmp", "/config"),
            cpu=f"{args.jvb_cpu_millis}m",
            memory=f"{args.jvb_memory_mib}Mi",
            probe={"httpGet": {"path": NLB_HEALTH_PATH, "port": JVB_HEALTH_PORT}},
            replicas=args.jvb_replicas,
            sidecars=[turn_container],
            extra_volumes=[
                {
                    "name": "turn-config",
                    "secret": {"secretName": "jitsi", "items": [{"key": "turnserver.conf", "path": "turnserver.conf"}]},
                },
                {"name": "turn-db", "emptyDir": {}},
            ],
            # One bridge: a new pod must not start while the old one still holds the conference (Recreate).
            recreate=True,
        )
        self._deployment(
            name,
            "web",
            after_prosody,
            image=IMAGES["web"],
            env=_env(
                {
                    **auth,
                    **xmpp,
                    "XMPP_BOSH_URL_BASE": f"http://{prosody_host}:{PROSODY_HTTP_PORT}",
                    "ENABLE_XMPP_WEBSOCKET": "1",
                    # TLS ends at the ALB, which also redirects HTTP: nginx must neither redirect nor fetch certs.
                    "DISABLE_HTTPS": "1",
                    "ENABLE_HTTP_REDIRECT": "0",
                    "ENABLE_LETSENCRYPT": "0",
                    "ENABLE_WELCOME_PAGE": "0",
                    "ENABLE_PREJOIN_PAGE": "1",
                    "ENABLE_RECORDING": "0",
                    "ENABLE_TRANSCRIPTIONS": "0",
                    "ENABLE_LIVESTREAMING": "0",
                }
            ),
            ports=[("http", WEB_PORT, "TCP")],
            # docker-jitsi-meet's read-only web: tmpfs /run and /tmp, /config; nginx's temp files under /var/lib/nginx.
            writable=("/run", "/tmp", "/config", "/var/lib/nginx", "/usr/share/jitsi-meet/transcripts"),
            cpu="100m",
            memory="128Mi",
            probe={"httpGet": {"path": "/", "port": WEB_PORT}},
            replicas=args.web_replicas,
        )
        web_service = k8s.core.v1.Service(
            f"{name}-web-svc",
            opts=service_opts,
            metadata={"name": "web", "namespace": NAMESPACE, "labels": {"app": "web"}},
            spec={"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": WEB_PORT}]},
        )

        certificate_arn = args.certificate_arn
        if certificate_arn is None:
            assert args.hosted_zone_id is not None  # validate_telemedicine_args
            certificate_arn = issued_certificate(name, args.hostname, args.hosted_zone_id, args.tags, parent=self)

        # Both go through the controller: created once its webhooks answer, deleted while it still runs so it
        # deletes the NLB (and the ALB rules) and clears the finalizers. On destroy the NLB releases the Elastic IPs;
        # the Network releases them only after the janitor (see components/network.py).
        media_annotations_output = pulumi.Output.all(args.public_subnet_ids, args.media_allocation_ids).apply(
            lambda a: media_annotations(a[0], a[1], args.tags)
        )
        self.media_service = k8s.core.v1.Service(
            f"{name}-jvb-media",
            opts=pulumi.ResourceOptions.merge(
                args.controller.load_balancer_opts(parent=self), pulumi.ResourceOptions(depends_on=[namespace])
            ),
            metadata={"name": "jvb-media", "namespace": NAMESPACE, "annotations": media_annotations_output},
            spec={
                "type": "LoadBalancer",
                "loadBalancerClass": NLB_LOAD_BALANCER_CLASS,
                # UDP keeps the client's address (IP targets); nothing answers NodePorts, so none are allocated.
                "allocateLoadBalancerNodePorts": False,
                "selector": {"app": "jvb"},
                "ports": [
                    {"name": "media", "protocol": "UDP", "port": JVB_MEDIA_PORT, "targetPort": JVB_MEDIA_PORT},
                    {"name": "turn", "protocol": "TCP", "port": TURN_PUBLIC_PORT, "targetPort": TURN_PORT},
                ],
            },
        )
        self.ingress = k8s.networking.v1.Ingress(
            f"{name}-ingress",
            opts=pulumi.ResourceOptions.merge(
                args.controller.load_balancer_opts(parent=self),
                pulumi.ResourceOptions(depends_on=[namespace, web_service]),
            ),
            metadata={
                "name": "jitsi",
                "namespace": NAMESPACE,
                "annotations": {
                    "alb.ingress.kubernetes.io/group.name": args.alb_group,
                    "alb.ingress.kubernetes.io/target-type": "ip",
                    "alb.ingress.kubernetes.io/healthcheck-path": "/",
                    "alb.ingress.kubernetes.io/certificate-arn": certificate_arn,
                    "alb.ingress.kubernetes.io/listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
                    "alb.ingress.kubernetes.io/ssl-redirect": "443",
                    # The websocket to prosody stays open for the whole visit; the ALB's default idle limit (60 s)
                    # is kept alive by Jitsi's pings.
                },
            },
            spec={
                "ingressClassName": "alb",
                "rules": [
                    {
                        "host": args.hostname,
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {"service": {"name": "web", "port": {"number": 80}}},
                                }
                            ]
                        },
                    }
                ],
            },
        )
        self._network_policies(name, in_ns, args.vpc_cidr)
        if args.hosted_zone_id:
            # Depends on the Ingress through its status: on destroy the name goes before the ALB's rules.
            aws.route53.Record(
                f"{name}-dns",
                zone_id=args.hosted_zone_id,
                name=args.hostname,
                type="CNAME",
                ttl=300,
                records=[
                    self.ingress.status.apply(
                        lambda st: (
                            st.load_balancer.ingress[0].hostname
                            if st and st.load_balancer and st.load_balancer.ingress
                            else ""
                        )
                    )
                ],
                opts=pulumi.ResourceOptions(parent=self),
            )

        self.base_url = pulumi.Output.from_input(public_url)
        self.jwt_secret = pulumi.Output.secret(jwt.result)
        self.media_addresses = pulumi.Output.from_input(args.media_public_ips).apply(list)
        self.register_outputs(
            {"base_url": self.base_url, "jwt_secret": self.jwt_secret, "media_addresses": self.media_addresses}
        )

    def _deployment(
        self,
        name: str,
        app: str,
        opts: pulumi.ResourceOptions,
        *,
        image: str,
        env: list[dict[str, Any]],
        ports: list[tuple[str, int, str]],
        writable: tuple[str, ...],
        cpu: str,
        memory: str,
        probe: dict[str, Any] | None,
        replicas: int = 1,
        sidecars: Sequence[dict[str, Any]] = (),
        extra_volumes: Sequence[dict[str, Any]] = (),
        recreate: bool = False,
    ) -> k8s.apps.v1.Deployment:
        volumes, mounts = _writable(*writable)
        container: dict[str, Any] = {
            "name": app,
            "image": image,
            "env": env,
            "ports": [{"name": n, "containerPort": p, "protocol": proto} for n, p, proto in ports],
            "securityContext": _security(JITSI_UID),
            "resources": _resources(cpu, memory),
            "volumeMounts": mounts,
        }
        if probe:
            container["readinessProbe"] = {**probe, "periodSeconds": 10}
            container["livenessProbe"] = {**probe, "periodSeconds": 20, "failureThreshold": 6}
        return k8s.apps.v1.Deployment(
            f"{name}-{app}",
            opts=opts,
            metadata={"name": app, "namespace": NAMESPACE, "labels": {"app": app}},
            spec={
                "replicas": replicas,
                "selector": {"matchLabels": {"app": app}},
                "strategy": {"type": "Recreate"} if recreate else {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": {"app": app}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "fsGroup": JITSI_UID,
                        },
                        "containers": [container, *sidecars],
                        "volumes": [*volumes, *extra_volumes],
                    },
                },
            },
        )

    def _network_policies(self, name: str, opts: pulumi.ResourceOptions, vpc_cidr: str) -> None:
        def policy(suffix: str, spec: dict[str, Any]) -> None:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-{suffix}", opts=opts, metadata={"name": suffix, "namespace": NAMESPACE}, spec=spec
            )

        def pods(app: str) -> dict[str, Any]:
            return {"podSelector": {"matchLabels": {"app": app}}}

        def tcp(*ports: int) -> list[dict[str, Any]]:
            return [{"protocol": "TCP", "port": p} for p in ports]

        dns = {
            "to": [
                {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }
        vpc = {"ipBlock": {"cidr": vpc_cidr}}
        to_prosody = {"to": [pods("prosody")], "ports": tcp(PROSODY_C2S_PORT)}

        policy("default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        policy(
            "prosody",
            {
                **pods("prosody"),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [pods("jicofo"), pods("jvb")], "ports": tcp(PROSODY_C2S_PORT)},
                    {"from": [pods("web")], "ports": tcp(PROSODY_HTTP_PORT)},
                ],
                "egress": [dns],
            },
        )
        policy(
            "jicofo",
            {**pods("jicofo"), "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": [dns, to_prosody]},
        )
        policy(
            "web",
            {
                **pods("web"),
                "policyTypes": ["Ingress", "Egress"],
                # The ALB sends to pod IPs from its nodes in the VPC.
                "ingress": [{"from": [vpc], "ports": tcp(WEB_PORT)}],
                "egress": [dns, {"to": [pods("prosody")], "ports": tcp(PROSODY_HTTP_PORT)}],
            },
        )
        policy(
            "jvb",
            {
                **pods("jvb"),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    # Media from every patient's and doctor's browser: the NLB keeps their addresses (UDP, IP targets).
                    {"ports": [{"protocol": "UDP", "port": JVB_MEDIA_PORT}]},
                    # TURN over the NLB's TCP listener (from the NLB's own addresses) and its health checks.
                    {"from": [vpc], "ports": tcp(TURN_PORT, JVB_HEALTH_PORT)},
                ],
                # Media back to browsers anywhere (UDP from 10000), XMPP to prosody.
                "egress": [
                    dns,
                    to_prosody,
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "UDP"}]},
                ],
            },
        )
