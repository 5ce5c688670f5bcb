"""Database: the clinic's PostgreSQL on RDS, private, encrypted, with its password kept by RDS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.iam import service_trust_policy
from components.key_policy import KeyUser, account_context, key_policy, validate_key_users
from limits import MIN_PROD_BACKUP_DAYS, RDS_MONITORING_INTERVALS, max_db_connections

POSTGRES_PORT = 5432
# Slower statements are logged: the clinic's latency objective is 2 s end to end.
SLOW_STATEMENT_MS = 2000
# What RDS needs to publish Enhanced Monitoring's OS metrics to CloudWatch Logs (RDSOSMetrics), nothing more.
ENHANCED_MONITORING_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"


@dataclass(frozen=True)
class DatabaseArgs:
    vpc_id: pulumi.Input[str]
    """VPC of the database security group."""
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    """Isolated database subnets (at least two AZs, which RDS requires even for single-AZ)."""
    engine_version: str
    """PostgreSQL major version (the parameter group's family follows it); RDS applies the minors."""
    instance_class: str
    """RDS instance class; its memory sets max_connections (limits.DB_INSTANCE_CLASS_MEMORY_GIB)."""
    allocated_storage_gb: int
    """Initial gp3 storage."""
    max_allocated_storage_gb: int
    """Ceiling for storage autoscaling."""
    backup_retention_days: int
    """Automated backups and point-in-time recovery window."""
    db_name: str = "clinic"
    """Name of the application database."""
    username: str = "clinic_admin"
    """Master user name; its password is generated and kept by RDS in Secrets Manager."""
    multi_az: bool = False
    """Synchronous standby in a second AZ."""
    deletion_protection: bool = False
    """RDS refuses deletion while set."""
    performance_insights: bool = False
    """Performance Insights (encrypted with the database's key)."""
    monitoring_interval_seconds: int = 0
    """Enhanced Monitoring interval (0 off; 1, 5, 10, 15, 30 or 60), with a role RDS publishes the metrics as."""
    client_security_group_ids: Sequence[pulumi.Input[str]] = ()
    """Security groups allowed to connect on 5432; nothing else is."""
    protect: bool = False
    """Prod: `protect` the instance and its key so no Pulumi operation can delete patients' data."""
    key_users: Sequence[KeyUser] = ()
    """Who may use the database key, through which services (the key policy names nobody else)."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags for every resource."""


def validate_database_args(args: DatabaseArgs) -> None:
    s = args
    validate_key_users(args.key_users)
    if s.monitoring_interval_seconds not in RDS_MONITORING_INTERVALS:
        raise ValueError(
            f"monitoring_interval_seconds = {s.monitoring_interval_seconds} is invalid; allowed: "
            + ", ".join(map(str, RDS_MONITORING_INTERVALS))
        )
    if args.protect and not (s.deletion_protection and s.multi_az and s.backup_retention_days >= MIN_PROD_BACKUP_DAYS):
        raise ValueError(
            f"a protected database needs deletion_protection, multi_az and >= {MIN_PROD_BACKUP_DAYS} "
            "days of backups; "
            f"got deletion_protection={s.deletion_protection}, multi_az={s.multi_az}, "
            f"backup_retention_days={s.backup_retention_days}"
        )


def managed_secret_arn(secrets: Sequence[aws.rds.outputs.InstanceMasterUserSecret]) -> str:
    """The Secrets Manager secret RDS keeps the master password in (manage_master_user_password)."""
    arn = secrets[0].secret_arn if secrets else None
    if arn is None:
        raise ValueError("RDS reported no managed master user secret: the apps would have no database password")
    return arn


class Database(pulumi.ComponentResource):
    address: pulumi.Output[str]
    """Host name of the instance (private)."""
    port: pulumi.Output[int]
    """PostgreSQL port."""
    db_name: pulumi.Output[str]
    """The application database."""
    secret_arn: pulumi.Output[str]
    """ARN of the RDS-managed master secret (JSON username/password) in Secrets Manager; never the password."""
    kms_key_arn: pulumi.Output[str]
    """Key encrypting storage, snapshots, the master secret and Performance Insights."""
    security_group_id: pulumi.Output[str]
    """The database's security group."""
    instance_arn: pulumi.Output[str]
    """ARN of the RDS instance."""
    instance_id: pulumi.Output[str]
    """Identifier of the RDS instance (the DBInstanceIdentifier of its metrics and of a restore's source)."""

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("clinic:index:Database", name, None, opts)
        validate_database_args(args)
        s = args
        tags = dict(args.tags)
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect)

        key = aws.kms.Key(
            f"{name}-key",
            description=f"{name}: RDS storage, snapshots and master secret",
            enable_key_rotation=True,
            deletion_window_in_days=30 if args.protect else 7,
            policy=account_context(self).apply(lambda c: key_policy(*c, users=args.key_users)),
            tags=tags,
            opts=keep,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/{name}", target_key_id=key.key_id, opts=child)

        subnet_group = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, tags=tags, opts=child)
        # No egress rules: RDS never initiates connections; ingress only from the client groups below.
        security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            vpc_id=args.vpc_id,
            egress=[],
            description=f"{name}: PostgreSQL from clinic workloads only",
            tags={**tags, "Name": f"{name}-sg"},
            opts=child,
        )
        for i, client in enumerate(args.client_security_group_ids):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-from-client-{i}",
                security_group_id=security_group.id,
                referenced_security_group_id=client,
                ip_protocol="tcp",
                from_port=POSTGRES_PORT,
                to_port=POSTGRES_PORT,
                description="PostgreSQL from a clinic workload",
                opts=child,
            )

        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{s.engine_version}",
            tags=tags,
            opts=child,
            description=f"{name}: TLS required, slow statements logged, connection limit set",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_min_duration_statement", "value": str(SLOW_STATEMENT_MS)},
                # Stated, not left to RDS's formula on memory it does not publish: the connections alarm is 80 %
                # of this very number. Static: a change applies at the next reboot.
                {
                    "name": "max_connections",
                    "value": str(max_db_connections(s.instance_class)),
                    "apply_method": "pending-reboot",
                },
            ],
        )

        monitoring_role = None
        monitoring_ready: list[pulumi.Resource] = []
        if s.monitoring_interval_seconds:
            monitoring_role = aws.iam.Role(
                f"{name}-monitoring-role",
                assume_role_policy=service_trust_policy("monitoring.rds.amazonaws.com"),
                tags=tags,
                opts=child,
            )
            # RDS checks the role when the instance is created or modified: attach its policy first.
            monitoring_ready.append(
                aws.iam.RolePolicyAttachment(
                    f"{name}-monitoring-role-policy",
                    role=monitoring_role.name,
                    policy_arn=ENHANCED_MONITORING_POLICY,
                    opts=pulumi.ResourceOptions(parent=monitoring_role),
                )
            )

        instance = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=s.engine_version,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            instance_class=s.instance_class,
            db_name=s.db_name,
            username=s.username,
            # RDS generates and rotates the password in Secrets Manager: none in code, config or state.
            manage_master_user_password=True,
            master_user_secret_kms_key_id=key.arn,
            iam_database_authentication_enabled=True,
            storage_type="gp3",
            allocated_storage=s.allocated_storage_gb,
            max_allocated_storage=s.max_allocated_storage_gb,
            storage_encrypted=True,
            kms_key_id=key.arn,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[security_group.id],
            publicly_accessible=False,
            parameter_group_name=parameters.name,
            ca_cert_identifier="rds-ca-rsa2048-g1",
            multi_az=s.multi_az,
            backup_retention_period=s.backup_retention_days,
            backup_window="02:00-03:00",
            maintenance_window="sun:03:30-sun:04:30",
            copy_tags_to_snapshot=True,
            deletion_protection=s.deletion_protection,
            skip_final_snapshot=not args.protect,
            final_snapshot_identifier=f"{name}-final" if args.protect else None,
            delete_automated_backups=not args.protect,
            performance_insights_enabled=s.performance_insights,
            performance_insights_kms_key_id=key.arn if s.performance_insights else None,
            performance_insights_retention_period=7 if s.performance_insights else None,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            monitoring_interval=s.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn if monitoring_role else None,
            apply_immediately=not args.protect,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=monitoring_ready),
        )

        self.address = instance.address
        self.port = instance.port
        self.db_name = pulumi.Output.from_input(s.db_name)
        self.secret_arn = instance.master_user_secrets.apply(managed_secret_arn)
        self.kms_key_arn = key.arn
        self.security_group_id = security_group.id
        self.instance_arn = instance.arn
        self.instance_id = instance.identifier
        self.register_outputs(
            {
                "address": self.address,
                "port": self.port,
                "db_name": self.db_name,
                "secret_arn": self.secret_arn,
                "kms_key_arn": self.kms_key_arn,
                "security_group_id": self.security_group_id,
                "instance_arn": self.instance_arn,
                "instance_id": self.instance_id,
            }
        )
