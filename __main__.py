"""clinic-platform: read the stack's settings once, build the platform, export what operators and apps need."""

import os
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.alarms import Alarms, AlarmsArgs, ReplicationWatch
from components.audit_trail import AuditTrail, AuditTrailArgs
from components.backup import DatabaseBackup
from components.ci_runner import CiRunner, CiRunnerArgs
from components.clinic_apps import ClinicApps, ClinicAppsArgs, PlatformEndpoints, TelemedicineAccess
from components.cluster import Cluster, ClusterArgs
from components.container_logs import ContainerLogs, ContainerLogsArgs
from components.database import Database
from components.email import Email, EmailArgs
from components.image_registry import BOOTSTRAP_ENV, ImageRegistry, ImageRegistryArgs
from components.lb_controller import LoadBalancerController, LoadBalancerControllerArgs
from components.lb_janitor import LoadBalancerJanitor, LoadBalancerJanitorArgs
from components.messaging import Messaging, MessagingArgs
from components.monitoring import Monitoring, MonitoringArgs
from components.network import Network, NetworkArgs
from components.scaling import ClusterScaling, ClusterScalingArgs
from components.storage import Storage, StorageArgs
from components.telemedicine import JWT_APP_ID, JWT_AUDIENCE, XMPP_DOMAIN, Telemedicine, TelemedicineArgs
from stacks.component_args import backup_args, database_args, node_group_args
from stacks.key_users import platform_key_users
from stacks.settings import PlatformSettings, settings_from_pulumi


@dataclass(frozen=True)
class ActiveDatabase:
    """The instance the apps and alarms use: the stack's own, or one restored from it (database.restoredInstanceId)."""

    instance_id: pulumi.Output[str]
    instance_arn: pulumi.Output[str]
    address: pulumi.Output[str]
    port: pulumi.Output[int]
    secret_arn: pulumi.Output[str]


@dataclass(frozen=True)
class Platform:
    """What the program built, for the exports below and for tests that add to it."""

    network: Network
    ci_runner: CiRunner | None
    cluster: Cluster
    controller: LoadBalancerController
    database: Database
    active_database: ActiveDatabase
    storage: Storage
    messaging: Messaging
    email: Email
    registry: ImageRegistry
    apps: ClinicApps
    alarms: Alarms
    monitoring: Monitoring | None
    backup: DatabaseBackup | None
    audit_trail: AuditTrail
    telemedicine: Telemedicine | None


def platform_tags(settings: PlatformSettings) -> dict[str, str]:
    return {
        **settings.tags,
        "project": "clinic-platform",
        "stack": settings.stack,
        "environment": settings.environment,
        "managed-by": "pulumi",
    }


def availability_zones(settings: PlatformSettings) -> list[str]:
    zones = aws.get_availability_zones(
        state="available", filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    ).names
    wanted = settings.network.az_count
    if len(zones) < wanted:
        raise ValueError(
            f"network.azCount = {wanted} is invalid for {settings.region}; allowed: at most "
            f"{len(zones)} (available zones: {', '.join(zones)})"
        )
    return sorted(zones)[:wanted]


def active_database(settings: PlatformSettings, database: Database) -> ActiveDatabase:
    restored = settings.database.restored_instance_id
    if restored is None:
        return ActiveDatabase(
            database.instance_id, database.instance_arn, database.address, database.port, database.secret_arn
        )
    # A restore made by `python -m ops.db_restore` lives outside the state; it is read, never managed, and
    # its RDS-managed secret is encrypted with the stack's database key (the restore asks for that key).
    found = aws.rds.get_instance_output(db_instance_identifier=restored)
    return ActiveDatabase(
        found.db_instance_identifier,
        found.db_instance_arn,
        found.address,
        found.port,
        found.master_user_secrets.apply(lambda secrets: secrets[0].secret_arn),
    )


def build_platform(settings: PlatformSettings) -> Platform:
    tags = platform_tags(settings)
    base = f"clinic-{settings.stack}"
    # Who may use each key (README "Keys"): every key policy is built from this one table.
    keys = platform_key_users(settings)

    network = Network(
        f"{base}-network",
        NetworkArgs(
            vpc_cidr=settings.network.vpc_cidr,
            availability_zones=availability_zones(settings),
            nat_mode=settings.network.nat_mode,
            cluster_name=settings.cluster_name,
            region=settings.region,
            flow_logs=settings.network.flow_logs,
            flow_log_retention_days=settings.network.flow_log_retention_days,
            media_addresses=settings.telemedicine.enabled,
            tags=tags,
        ),
    )
    # On destroy the janitor sweeps after the cluster is gone and before any subnet, gateway or the VPC is deleted.
    # It depends only on what the network creates in seconds, so the control plane does not wait for NAT gateways.
    sweep = LoadBalancerJanitorArgs(
        vpc_id=network.vpc_id,
        cluster_name=settings.cluster_name,
        region=settings.region,
        timeout_seconds=settings.cluster.janitor_timeout_seconds,
    )
    janitor = LoadBalancerJanitor(
        f"{base}-lb-janitor", sweep, opts=pulumi.ResourceOptions(depends_on=network.foundation)
    )
    # The same sweep between the nodes and their egress: node groups wait for the NAT routes through it on create;
    # on destroy NAT gateways and private routes go only after it, when no node (so no controller) is left.
    egress_janitor = LoadBalancerJanitor(
        f"{base}-lb-janitor-egress", sweep, opts=pulumi.ResourceOptions(depends_on=network.egress)
    )
    # The place CI drives the private cluster from (README "First deployment"). It needs the NAT routes (its jobs
    # reach GitHub through them), not the cluster, so the AWS-only first `pulumi up` from an operator's machine
    # creates it without reaching the cluster's API.
    ci_runner = None
    if settings.ci.github_connection_arn and settings.ci.repository:
        ci_runner = CiRunner(
            f"{base}-ci-runner",
            CiRunnerArgs(
                project_name=f"{base}-ci-runner",
                repository=settings.ci.repository,
                connection_arn=settings.ci.github_connection_arn,
                vpc_id=network.vpc_id,
                vpc_cidr=settings.network.vpc_cidr,
                subnet_ids=network.private_subnet_ids,
                build_timeout_minutes=settings.ci.build_timeout_minutes,
                compute_type=settings.ci.compute_type,
                log_retention_days=settings.observability.log_retention_days,
                retain_logs=settings.protect_data,
                tags=tags,
            ),
            opts=pulumi.ResourceOptions(depends_on=network.egress),
        )
    # load_settings refuses a stack without a deploy role (PlatformSettings._reach): this only narrows the type.
    assert settings.cluster.deploy_role_arn is not None
    cluster = Cluster(
        f"{base}-cluster",
        ClusterArgs(
            cluster_name=settings.cluster_name,
            kubernetes_version=settings.cluster.kubernetes_version,
            vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            service_ipv4_cidr=settings.network.kubernetes_service_cidr,
            node_groups=node_group_args(settings.cluster),
            deploy_role_arn=settings.cluster.deploy_role_arn,
            preview_role_arn=settings.cluster.preview_role_arn,
            admin_role_arns=settings.cluster.admin_role_arns,
            viewer_role_arns=settings.cluster.viewer_role_arns,
            api_client_security_group_ids=[ci_runner.security_group_id] if ci_runner else [],
            public_access_cidrs=settings.cluster.public_access_cidrs,
            protect=settings.is_prod,
            log_retention_days=settings.observability.log_retention_days,
            node_dependencies=[egress_janitor],
            secrets_key_users=keys.cluster_secrets,
            tags=tags,
        ),
        opts=pulumi.ResourceOptions(depends_on=[janitor]),
    )
    controller = LoadBalancerController(
        f"{base}-lb-controller",
        LoadBalancerControllerArgs(cluster=cluster, vpc_id=network.vpc_id, region=settings.region, tags=tags),
    )
    # metrics-server for the HPA, the Cluster Autoscaler for the node groups.
    ClusterScaling(
        f"{base}-scaling",
        ClusterScalingArgs(
            cluster=cluster,
            kubernetes_version=settings.cluster.kubernetes_version,
            region=settings.region,
            wait_for=controller.ready,
            tags=tags,
        ),
    )

    # Data services hang off the network only, never off the cluster: they are created in parallel with it and
    # outlive none of its teardown. Only the database's ingress rule refers to the cluster's security group.
    database = Database(
        f"{base}-db",
        database_args(
            settings.database,
            vpc_id=network.vpc_id,
            subnet_ids=network.database_subnet_ids,
            client_security_group_ids=[cluster.cluster_security_group_id],
            protect=settings.protect_data,
            key_users=keys.database,
            tags=tags,
        ),
    )
    storage = Storage(
        f"{base}-exams",
        StorageArgs(
            noncurrent_version_days=settings.storage.noncurrent_version_days,
            cors_allowed_origins=settings.storage.cors_allowed_origins,
            retain=settings.protect_data,
            region=settings.region,
            # The exam PDFs' second region is the database copies' (settings refuse replication without one).
            replica_region=settings.backup.copy_region if settings.storage.replicate_exams else None,
            # Operators restore PDFs from the replica, as they restore the database.
            replica_reader_role_arns=settings.cluster.admin_role_arns,
            key_users=keys.exams,
            tags=tags,
        ),
    )
    # Who read or changed an exam PDF (or its replica), by any path, and every management call in the account.
    audit_trail = AuditTrail(
        f"{base}-audit",
        AuditTrailArgs(
            trail_name=f"{base}-audit",
            data_event_bucket_arns=[storage.bucket_arn]
            + ([storage.replica_bucket_arn] if storage.replica_bucket_arn is not None else []),
            retention_days=settings.audit.retention_days,
            reader_role_arns=settings.audit.reader_role_arns,
            retain=settings.protect_data,
            tags=tags,
        ),
    )
    active = active_database(settings, database)
    messaging = Messaging(
        f"{base}-events", MessagingArgs(key_users=keys.queues, retain_key=settings.protect_data, tags=tags)
    )
    email = Email(
        f"{base}-email",
        EmailArgs(
            from_address=settings.email.from_address,
            domain=settings.email.domain,
            tags=tags,
        ),
    )

    # Depends on nothing else, so a new stack can create it alone first (ops/first_deploy.py) and push the images.
    registry = ImageRegistry(
        f"{base}-images",
        ImageRegistryArgs(
            repository_prefix=settings.cluster_name,
            images={
                "api": settings.images.api,
                "notifier": settings.images.notifier,
                "fileProcessor": settings.images.file_processor,
            },
            verify_images=os.environ.get(BOOTSTRAP_ENV) != "1",
            keep_images=settings.is_prod,
            tags=tags,
        ),
    )
    # Video visits: Jitsi on the cluster, its web on the clinic's ALB (one IngressGroup), its media on an NLB with
    # the Network's Elastic IPs. Created before the apps: the API's pods read its token secret.
    telemedicine, access, alb_group = None, None, None
    video_host = settings.telemedicine_hostname
    if video_host:
        alb_group = base
        telemedicine = Telemedicine(
            f"{base}-telemedicine",
            TelemedicineArgs(
                cluster=cluster,
                controller=controller,
                hostname=video_host,
                alb_group=alb_group,
                public_subnet_ids=network.public_subnet_ids,
                media_allocation_ids=network.media_allocation_ids,
                media_public_ips=network.media_public_ips,
                vpc_cidr=settings.network.vpc_cidr,
                certificate_arn=settings.telemedicine.certificate_arn,
                hosted_zone_id=settings.apps.hosted_zone_id,
                jvb_replicas=settings.telemedicine.jvb_replicas,
                jvb_cpu_millis=settings.telemedicine.jvb_cpu_millis,
                jvb_memory_mib=settings.telemedicine.jvb_memory_mib,
                tags=tags,
            ),
        )
        access = TelemedicineAccess(
            base_url=telemedicine.base_url,
            jwt_secret=telemedicine.jwt_secret,
            app_id=JWT_APP_ID,
            audience=JWT_AUDIENCE,
            domain=XMPP_DOMAIN,
        )
    apps = ClinicApps(
        f"{base}-apps",
        ClinicAppsArgs(
            cluster=cluster,
            controller=controller,
            api_image=registry.images["api"],
            notifier_image=registry.images["notifier"],
            file_processor_image=registry.images["fileProcessor"],
            api_replicas=settings.apps.api_replicas,
            api_max_replicas=settings.apps.api_max_replicas,
            notifier_replicas=settings.apps.notifier_replicas,
            hostname=settings.apps.hostname,
            certificate_arn=settings.apps.certificate_arn,
            time_zone=settings.apps.time_zone,
            hosted_zone_id=settings.apps.hosted_zone_id,
            alb_group=alb_group,
            telemedicine=access,
            tags=tags,
            protect_data_key=settings.protect_data,
            platform=PlatformEndpoints(
                region=settings.region,
                vpc_cidr=settings.network.vpc_cidr,
                database_cidrs=[plan.database for plan in network.subnet_plan],
                database_address=active.address,
                database_port=active.port,
                database_name=database.db_name,
                database_secret_arn=active.secret_arn,
                database_kms_key_arn=database.kms_key_arn,
                bucket_name=storage.bucket_name,
                bucket_arn=storage.bucket_arn,
                bucket_kms_key_arn=storage.kms_key_arn,
                queue_urls=messaging.queue_urls,
                queue_arns=messaging.queue_arns,
                dead_letter_queue_arns=messaging.dlq_arns,
                queue_kms_key_arn=messaging.kms_key_arn,
                email_identity_arn=email.identity_arn,
                email_configuration_set=email.configuration_set_name,
                email_configuration_set_arn=email.configuration_set_arn,
                email_from_address=email.from_address,
            ),
        ),
    )

    # Watching and recovery. CloudWatch alarms and the in-cluster Alertmanager notify the same topic.
    exam_replication = None
    if storage.replica_bucket_name is not None and storage.replication_rule_id is not None:
        exam_replication = ReplicationWatch(
            storage.bucket_name, storage.replica_bucket_name, storage.replication_rule_id
        )
    alarms = Alarms(
        f"{base}-alarms",
        AlarmsArgs(
            alarm_emails=settings.observability.alarm_emails,
            database_instance_id=active.instance_id,
            database_instance_class=settings.database.instance_class,
            database_allocated_storage_gb=settings.database.allocated_storage_gb,
            dlq_names=messaging.dlq_names,
            queue_names=messaging.queue_names,
            load_balancer_arn_suffix=apps.load_balancer_arn_suffix,
            exam_replication=exam_replication,
            topic_key_users=keys.alarm_topic,
            tags=tags,
        ),
    )
    ContainerLogs(
        f"{base}-container-logs",
        ContainerLogsArgs(
            cluster=cluster,
            retention_days=settings.observability.log_retention_days,
            retain=settings.protect_data,
            tags=tags,
            wait_for=controller.ready,
        ),
    )
    monitoring = None
    if settings.observability.monitoring:
        monitoring = Monitoring(
            f"{base}-monitoring",
            MonitoringArgs(
                cluster=cluster,
                prometheus_retention_days=settings.observability.prometheus_retention_days,
                prometheus_storage_gb=settings.observability.prometheus_storage_gb,
                alarm_topic_arn=alarms.topic_arn,
                alarm_topic_key_arn=alarms.topic_key_arn,
                region=settings.region,
                tags=tags,
                wait_for=controller.ready,
            ),
        )
    backup = None
    if settings.backup.enabled:
        # A restored instance in use holds the newest data: it is backed up alongside the original.
        arns = [database.instance_arn] + ([active.instance_arn] if settings.database.restored_instance_id else [])
        backup = DatabaseBackup(
            f"{base}-backup",
            backup_args(
                settings.backup,
                instance_arns=arns,
                region=settings.region,
                protect=settings.protect_data,
                vault_key_users=keys.backup_vault,
                copy_vault_key_users=keys.copy_vault,
                tags=tags,
            ),
        )
    return Platform(
        network,
        ci_runner,
        cluster,
        controller,
        database,
        active,
        storage,
        messaging,
        email,
        registry,
        apps,
        alarms,
        monitoring,
        backup,
        audit_trail,
        telemedicine,
    )


def export(p: Platform) -> None:
    pulumi.export("vpcId", p.network.vpc_id)
    pulumi.export("privateSubnetIds", p.network.private_subnet_ids)
    pulumi.export("clusterName", p.cluster.cluster_name)
    pulumi.export("kubeconfig", p.cluster.kubeconfig)
    if p.ci_runner:
        # What the workflows put in `runs-on` for every job that previews, updates or destroys this stack.
        pulumi.export("ciRunnerProject", p.ci_runner.project_name)
        pulumi.export("ciRunsOn", p.ci_runner.runs_on)
    pulumi.export("lbControllerRelease", p.controller.release_name)
    pulumi.export("databaseInstanceId", p.active_database.instance_id)
    pulumi.export("databaseAddress", p.active_database.address)
    pulumi.export("databasePort", p.active_database.port)
    pulumi.export("databaseName", p.database.db_name)
    pulumi.export("databaseSecretArn", p.active_database.secret_arn)
    pulumi.export("stackDatabaseInstanceId", p.database.instance_id)
    pulumi.export("examBucketName", p.storage.bucket_name)
    if p.storage.replica_bucket_arn is not None:
        pulumi.export("examReplicaBucketArn", p.storage.replica_bucket_arn)
    pulumi.export("auditTrailArn", p.audit_trail.trail_arn)
    pulumi.export("auditLogBucketName", p.audit_trail.log_bucket_name)
    pulumi.export("queueUrls", p.messaging.queue_urls)
    pulumi.export("deadLetterQueueUrls", p.messaging.dlq_urls)
    pulumi.export("emailIdentityArn", p.email.identity_arn)
    pulumi.export("emailFromAddress", p.email.from_address)
    pulumi.export("emailConfigurationSet", p.email.configuration_set_name)
    pulumi.export("emailDnsRecords", p.email.dns_records)
    pulumi.export("apiRepositoryUrl", p.registry.repository_urls["api"])
    pulumi.export("notifierRepositoryUrl", p.registry.repository_urls["notifier"])
    pulumi.export("fileProcessorRepositoryUrl", p.registry.repository_urls["fileProcessor"])
    # What the workloads run (repository@sha256:...): pull-request previews set images.* to these.
    pulumi.export("apiImage", p.registry.images["api"])
    pulumi.export("notifierImage", p.registry.images["notifier"])
    pulumi.export("fileProcessorImage", p.registry.images["fileProcessor"])
    pulumi.export("clinicUrl", p.apps.load_balancer_hostname)
    pulumi.export("alarmTopicArn", p.alarms.topic_arn)
    if p.telemedicine:
        pulumi.export("telemedicineUrl", p.telemedicine.base_url)
        pulumi.export("telemedicineMediaAddresses", p.telemedicine.media_addresses)
    if p.backup:
        pulumi.export("backupVaultName", p.backup.vault_name)
        pulumi.export("backupCopyVaultArn", p.backup.copy_vault_arn)


platform = build_platform(settings_from_pulumi())
export(platform)
