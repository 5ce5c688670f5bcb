"""Cluster: private nodes, IMDSv2, encrypted secrets, logging, limited public endpoint, IRSA scoped to one account."""

from components.cluster import Cluster, ClusterArgs, NodeGroupArgs, irsa_trust_policy
from tests.infra.pulumi_mocks import evaluate

EKS = "eks:index:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"


def test_control_plane_is_encrypted_logged_pinned_and_reachable_only_from_configured_cidrs(stack):
    cluster = stack.one(EKS)
    key = next(k for k in stack.of_type("aws:kms/key:Key") if k.name.endswith("cluster-secrets-key"))
    assert cluster.inputs["encryptionConfigKeyArn"] == key.state["arn"]
    assert sorted(cluster.inputs["enabledClusterLogTypes"]) == sorted(
        ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    )
    assert cluster.inputs["version"] == "1.35"
    assert cluster.inputs["endpointPrivateAccess"] is True
    # The committed stacks reach the API from the CI runner in the VPC: no public endpoint at all.
    assert cluster.inputs["endpointPublicAccess"] is False and "publicAccessCidrs" not in cluster.inputs
    assert cluster.inputs["authenticationMode"] == "API"
    assert cluster.inputs["createOidcProvider"] is True
    assert cluster.inputs["nodeAssociatePublicIpAddress"] is False
    assert cluster.inputs["kubernetesServiceIpAddressRange"] == "172.20.0.0/16"


def test_nodes_live_in_private_subnets_only(stack):
    private = sorted(f"{s.name}-id" for s in stack.of_type("aws:ec2/subnet:Subnet") if "-private-" in s.name)
    assert sorted(stack.one(EKS).inputs["privateSubnetIds"]) == private
    assert "publicSubnetIds" not in stack.one(EKS).inputs
    for group in stack.of_type(NODE_GROUP):
        assert sorted(group.inputs["subnetIds"]) == private, group.name


def test_nodes_require_imdsv2_with_no_hop_for_pods_and_encrypted_disks(stack):
    for template in stack.of_type(TEMPLATE):
        metadata = template.inputs["metadataOptions"]
        assert metadata["httpTokens"] == "required", template.name
        assert metadata["httpPutResponseHopLimit"] == 1, template.name
        assert template.inputs["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true", template.name
    for group in stack.of_type(NODE_GROUP):
        template = stack.one(TEMPLATE, group.name + "-lt")
        assert group.inputs["launchTemplate"]["id"] == f"{template.name}-id", group.name


def test_dev_nodes_may_be_spot_prod_nodes_are_on_demand_across_azs(dev, prod):
    (dev_group,), (prod_group,) = dev.of_type(NODE_GROUP), prod.of_type(NODE_GROUP)
    assert dev_group.inputs["capacityType"] == "SPOT"
    assert prod_group.inputs["capacityType"] == "ON_DEMAND"
    assert prod_group.inputs["scalingConfig"]["minSize"] >= 3
    for group in (dev_group, prod_group):
        assert group.inputs["updateConfig"]["maxUnavailable"] == 1
        assert group.inputs["version"] == "1.35"


def test_node_role_has_only_the_node_policies(stack):
    attached = sorted(
        a.inputs["policyArn"].rsplit("/", 1)[1]
        for a in stack.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if "-cluster-node-" in a.name
    )
    assert attached == ["AmazonEC2ContainerRegistryReadOnly", "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy"]


def test_kubernetes_resources_use_the_cluster_provider(stack):
    provider = stack.one("pulumi:providers:kubernetes")
    assert provider.property_dependencies["kubeconfig"] == {stack.one(EKS).urn}
    for resource in stack.records:
        if resource.type.startswith("kubernetes:"):
            assert resource.provider == provider.urn, f"{resource.name} must deploy through the cluster's provider"


def test_kubeconfig_is_exported_only_as_a_secret(stack):
    value, is_secret = stack.exports["kubeconfig"]
    assert is_secret and value


def test_irsa_trust_is_limited_to_one_service_account_with_sts_audience():
    policy = irsa_trust_policy(
        "arn:aws:iam::1:oidc-provider/oidc.example/id/X", "https://oidc.example/id/X", "clinic", "api"
    )
    import json

    statement = json.loads(policy)["Statement"][0]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"]["StringEquals"] == {
        "oidc.example/id/X:sub": "system:serviceaccount:clinic:api",
        "oidc.example/id/X:aud": "sts.amazonaws.com",
    }


def test_graviton_node_groups_get_arm64_amis():
    group = NodeGroupArgs(
        name="general",
        instance_types=("m7g.large",),
        capacity_type="ON_DEMAND",
        min_size=1,
        desired_size=1,
        max_size=2,
        disk_size_gb=20,
    )
    args = ClusterArgs(
        cluster_name="c",
        kubernetes_version="1.34",
        vpc_id="v",
        private_subnet_ids=["a", "b"],
        service_ipv4_cidr="172.20.0.0/16",
        node_groups=[group],
        deploy_role_arn="arn:aws:iam::123456789012:role/clinic-deploy",
        api_client_security_group_ids=["sg-runner"],
    )
    graph = evaluate(lambda: Cluster("c", args), stack="dev")
    assert graph.one(NODE_GROUP).inputs["amiType"] == "AL2023_ARM_64_STANDARD", "Graviton types need arm64 AMIs"


def test_database_admits_the_cluster_security_group_and_nothing_else(stack):
    database_sg = next(g for g in stack.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-db-sg"))
    rules = [
        r
        for r in stack.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
        if r.inputs["securityGroupId"] == f"{database_sg.name}-id"
    ]
    cluster = stack.one(EKS).inputs["name"]
    assert [r.inputs["referencedSecurityGroupId"] for r in rules] == [f"sg-{cluster}-cluster"]
