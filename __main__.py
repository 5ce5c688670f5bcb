"""clinic-platform: read the stack's settings once, build the platform, export what operators and apps need."""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.clinic_apps import ClinicApps, ClinicAppsArgs, PlatformEndpoints
from components.cluster import Cluster, ClusterArgs
from components.database import Database, DatabaseArgs
from components.email import Email, EmailArgs
from components.lb_controller import LoadBalancerController, LoadBalancerControllerArgs
from components.lb_janitor import LoadBalancerJanitor, LoadBalancerJanitorArgs
from components.messaging import Messaging, MessagingArgs
from components.network import Network, NetworkArgs
from components.storage import Storage, StorageArgs
from stacks.settings import PlatformSettings, settings_from_pulumi


@dataclass(frozen=True)
class Platform:
    """What the program built, for the exports below and for tests that add to it."""

    network: Network
    cluster: Cluster
    controller: LoadBalancerController
    database: Database
    storage: Storage
    messaging: Messaging
    email: Email
    apps: ClinicApps


def platform_tags(settings: PlatformSettings) -> dict[str, str]:
    return {**settings.tags, "project": "clinic-platform", "stack": settings.stack,
            "environment": settings.environment, "managed-by": "pulumi"}


def availability_zones(settings: PlatformSettings) -> list[str]:
    zones = aws.get_availability_zones(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]).names
    wanted = settings.network.az_count
    if len(zones) < wanted:
        raise ValueError(f"network.azCount = {wanted} is invalid for {settings.region}; allowed: at most "
                         f"{len(zones)} (available zones: {', '.join(zones)})")
    return sorted(zones)[:wanted]


def build_platform(settings: PlatformSettings) -> Platform:
    tags = platform_tags(settings)
    base = f"clinic-{settings.stack}"

    network = Network(f"{base}-network", NetworkArgs(
        vpc_cidr=settings.network.vpc_cidr,
        availability_zones=availability_zones(settings),
        nat_mode=settings.network.nat_mode,
        cluster_name=settings.cluster_name,
        region=settings.region,
        flow_logs=settings.network.flow_logs,
        flow_log_retention_days=settings.network.flow_log_retention_days,
        tags=tags,
    ))
    # On destroy the janitor runs after the cluster is gone and before any subnet, route or gateway is deleted.
    janitor = LoadBalancerJanitor(f"{base}-lb-janitor", LoadBalancerJanitorArgs(
        vpc_id=network.vpc_id,
        cluster_name=settings.cluster_name,
        region=settings.region,
        timeout_seconds=settings.cluster.janitor_timeout_seconds,
    ), opts=pulumi.ResourceOptions(depends_on=[network]))
    cluster = Cluster(f"{base}-cluster", ClusterArgs(
        cluster_name=settings.cluster_name,
        kubernetes_version=settings.cluster.kubernetes_version,
        vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids,
        service_ipv4_cidr=settings.network.kubernetes_service_cidr,
        node_groups=settings.cluster.node_groups,
        public_access_cidrs=settings.cluster.public_access_cidrs,
        admin_role_arns=settings.cluster.admin_role_arns,
        protect=settings.is_prod,
        tags=tags,
    ), opts=pulumi.ResourceOptions(depends_on=[janitor]))
    controller = LoadBalancerController(f"{base}-lb-controller", LoadBalancerControllerArgs(
        cluster=cluster, vpc_id=network.vpc_id, region=settings.region, tags=tags))

    # Data services hang off the network only, never off the cluster: they are created in parallel with it and
    # outlive none of its teardown. Only the database's ingress rule refers to the cluster's security group.
    database = Database(f"{base}-db", DatabaseArgs(
        vpc_id=network.vpc_id,
        subnet_ids=network.database_subnet_ids,
        settings=settings.database,
        client_security_group_ids=[cluster.cluster_security_group_id],
        protect=settings.protect_data,
        tags=tags,
    ))
    storage = Storage(f"{base}-exams", StorageArgs(
        noncurrent_version_days=settings.storage.noncurrent_version_days,
        cors_allowed_origins=settings.storage.cors_allowed_origins,
        retain=settings.protect_data,
        tags=tags,
    ))
    messaging = Messaging(f"{base}-events", MessagingArgs(tags=tags))
    email = Email(f"{base}-email", EmailArgs(
        from_address=settings.email.from_address,
        domain=settings.email.domain,
        tags=tags,
    ))

    apps = ClinicApps(f"{base}-apps", ClinicAppsArgs(
        cluster=cluster,
        controller=controller,
        settings=settings.apps,
        keep_images=settings.is_prod,
        tags=tags,
        platform=PlatformEndpoints(
            region=settings.region,
            vpc_cidr=settings.network.vpc_cidr,
            database_cidrs=[plan.database for plan in network.subnet_plan],
            database_address=database.address,
            database_port=database.port,
            database_name=database.db_name,
            database_secret_arn=database.secret_arn,
            database_kms_key_arn=database.kms_key_arn,
            bucket_name=storage.bucket_name,
            bucket_arn=storage.bucket_arn,
            bucket_kms_key_arn=storage.kms_key_arn,
            queue_urls=messaging.queue_urls,
            queue_arns=messaging.queue_arns,
            email_identity_arn=email.identity_arn,
            email_configuration_set=email.configuration_set_name,
            email_configuration_set_arn=email.configuration_set_arn,
            email_from_address=email.from_address,
        ),
    ))
    return Platform(network, cluster, controller, database, storage, messaging, email, apps)


def export(p: Platform) -> None:
    pulumi.export("vpcId", p.network.vpc_id)
    pulumi.export("privateSubnetIds", p.network.private_subnet_ids)
    pulumi.export("clusterName", p.cluster.cluster_name)
    pulumi.export("kubeconfig", p.cluster.kubeconfig)
    pulumi.export("lbControllerRelease", p.controller.release_name)
    pulumi.export("databaseAddress", p.database.address)
    pulumi.export("databasePort", p.database.port)
    pulumi.export("databaseName", p.database.db_name)
    pulumi.export("databaseSecretArn", p.database.secret_arn)
    pulumi.export("examBucketName", p.storage.bucket_name)
    pulumi.export("queueUrls", p.messaging.queue_urls)
    pulumi.export("deadLetterQueueUrls", p.messaging.dlq_urls)
    pulumi.export("emailIdentityArn", p.email.identity_arn)
    pulumi.export("emailFromAddress", p.email.from_address)
    pulumi.export("emailConfigurationSet", p.email.configuration_set_name)
    pulumi.export("emailDnsRecords", p.email.dns_records)
    pulumi.export("apiRepositoryUrl", p.apps.api_repository_url)
    pulumi.export("notifierRepositoryUrl", p.apps.notifier_repository_url)
    pulumi.export("clinicUrl", p.apps.load_balancer_hostname)


platform = build_platform(settings_from_pulumi())
export(platform)
