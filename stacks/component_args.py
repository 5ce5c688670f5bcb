"""Where a stack's settings groups become components' own Args (plain values): the program and the tests that build
one component from a committed stack file use the same mapping. Components never see a settings group."""

from collections.abc import Mapping, Sequence

import pulumi

from components.backup import DatabaseBackupArgs
from components.cluster import NodeGroupArgs
from components.database import DatabaseArgs
from components.key_policy import KeyUser
from stacks.settings import BackupSettings, ClusterSettings, DatabaseSettings


def node_group_args(cluster: ClusterSettings) -> list[NodeGroupArgs]:
    return [NodeGroupArgs(**group.model_dump()) for group in cluster.node_groups]


def database_args(
    database: DatabaseSettings,
    *,
    vpc_id: pulumi.Input[str],
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]],
    client_security_group_ids: Sequence[pulumi.Input[str]],
    protect: bool,
    key_users: Sequence[KeyUser] = (),
    tags: Mapping[str, str],
) -> DatabaseArgs:
    return DatabaseArgs(
        vpc_id=vpc_id,
        subnet_ids=subnet_ids,
        engine_version=database.engine_version,
        instance_class=database.instance_class,
        allocated_storage_gb=database.allocated_storage_gb,
        max_allocated_storage_gb=database.max_allocated_storage_gb,
        backup_retention_days=database.backup_retention_days,
        db_name=database.name,
        username=database.username,
        multi_az=database.multi_az,
        deletion_protection=database.deletion_protection,
        performance_insights=database.performance_insights,
        monitoring_interval_seconds=database.monitoring_interval_seconds,
        client_security_group_ids=client_security_group_ids,
        protect=protect,
        key_users=key_users,
        tags=tags,
    )


def backup_args(
    backup: BackupSettings,
    *,
    instance_arns: Sequence[pulumi.Input[str]],
    region: str,
    protect: bool,
    vault_key_users: Sequence[KeyUser] = (),
    copy_vault_key_users: Sequence[KeyUser] = (),
    tags: Mapping[str, str],
) -> DatabaseBackupArgs:
    return DatabaseBackupArgs(
        instance_arns=instance_arns,
        retention_days=backup.retention_days,
        region=region,
        enabled=backup.enabled,
        copy_region=backup.copy_region,
        protect=protect,
        vault_key_users=vault_key_users,
        copy_vault_key_users=copy_vault_key_users,
        tags=tags,
    )
