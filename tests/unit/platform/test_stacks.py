"""The real stack program, run under Pulumi's mocks with each stage's Pulumi.<stage>.yaml."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from aistack.api.conventions import GPU_TAINT_KEY, GPU_TYPE_LABEL
from aistack.platform.gpu_nodes import gpu_node_labels
from aistack.testing.pulumi_mocks import ISSUER, PASSWORD, STAGES, Run, is_secret_value

ROOT = Path(__file__).resolve().parents[3]

EKS = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
RDS = "aws:rds/instance:Instance"
K8S_PROVIDER = "pulumi:providers:kubernetes"


def stage_yaml(stage: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stage}.yaml").read_text())["config"]


def test_project_file_runs_the_stacks_program_with_python() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["name"] == "aistack"
    assert project["runtime"]["name"] == "python"
    assert project["main"] == "stacks/"
    assert (ROOT / "stacks" / "__main__.py").is_file()
    assert {p.name for p in ROOT.glob("Pulumi.*.yaml")} == {f"Pulumi.{s}.yaml" for s in STAGES}


@pytest.mark.parametrize("stage", STAGES)
def test_resource_graph_has_every_component_and_its_resources(stage_runs: dict[str, Run], stage: str) -> None:
    run = stage_runs[stage]
    counts = Counter(r.type for r in run.resources)
    azs = len(stage_yaml(stage)["aistack:network"]["availabilityZones"])
    gpu_groups = len(stage_yaml(stage)["aistack:cluster"]["gpuNodeGroups"])
    nat = 1 if stage_yaml(stage)["aistack:network"]["natGateways"] == "single" else azs
    for component in ("GpuCluster", "Network", "ClusterAddons", "ManagedStores", "AIStackOperator"):
        assert counts[f"aistack:platform:{component}"] == 1, component
    assert counts["aistack:platform:SecureBucket"] == 2
    assert counts["aws:ec2/subnet:Subnet"] == 2 * azs
    assert counts["aws:ec2/natGateway:NatGateway"] == nat
    assert counts["aws:ec2/route:Route"] == 1 + azs
    assert counts[EKS] == 1
    assert counts[NODE_GROUP] == 1 + gpu_groups
    assert counts["aws:iam/openIdConnectProvider:OpenIdConnectProvider"] == 1
    assert counts[RDS] == 1
    assert counts[K8S_PROVIDER] == 1
    assert counts["kubernetes:helm.sh/v3:Release"] == 1
    assert counts["kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition"] == 2


@pytest.mark.parametrize("stage", STAGES)
def test_every_resource_is_parented_by_a_component(stage_runs: dict[str, Run], stage: str) -> None:
    """Only components sit at the stack root; everything else is a child (parent=self)."""
    for r in stage_runs[stage].resources:
        if r.type.startswith("aistack:platform:"):
            continue
        assert r.parent_type.startswith(
            "aistack:platform:"), f"{r.type} {r.name} has parent {r.parent_type!r}"
    roots = {r.type for r in stage_runs[stage].resources if r.parent_type == "pulumi:pulumi:Stack"}
    assert roots == {"aistack:platform:GpuCluster", "aistack:platform:ManagedStores",
                     "aistack:platform:AIStackOperator"}


@pytest.mark.parametrize("stage", STAGES)
def test_kubernetes_objects_go_through_the_clusters_provider(stage_runs: dict[str, Run], stage: str) -> None:
    run = stage_runs[stage]
    provider = run.one(K8S_PROVIDER)
    assert provider.parent_type == "aistack:platform:GpuCluster"
    assert is_secret_value(provider.inputs["kubeconfig"])
    k8s_objects = [r for r in run.resources if r.type.startswith("kubernetes:")]
    assert len(k8s_objects) >= 10
    for r in k8s_objects:
        assert r.provider.startswith(provider.urn + "::"), f"{r.type} {r.name} uses {r.provider!r}"
    for r in run.resources:
        if r.type.startswith("aws:"):
            assert not r.provider.startswith(provider.urn), r.name


@pytest.mark.parametrize("stage", STAGES)
def test_cluster_is_private_encrypted_logged_and_versioned(stage_runs: dict[str, Run], stage: str) -> None:
    run = stage_runs[stage]
    cluster = run.one(EKS).inputs
    cfg = stage_yaml(stage)["aistack:cluster"]
    assert cluster["version"] == cfg["kubernetesVersion"]
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    secrets_key = run.one("aws:kms/key:Key", "secrets")
    assert secrets_key.inputs["enableKeyRotation"] is True
    assert cluster["encryptionConfig"]["provider"]["keyArn"].endswith(secrets_key.name)
    assert cluster["enabledClusterLogTypes"] == cfg["logTypes"]
    logs = run.one("aws:cloudwatch/logGroup:LogGroup").inputs
    assert logs == {**logs, "name": f"/aws/eks/{cluster['name']}/cluster",
                    "retentionInDays": cfg["logRetentionDays"]}
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["publicAccessCidrs"] == cfg["publicAccessCidrs"]
    assert cluster["deletionProtection"] is (stage == "prod")
    private = {r.name + "-id" for r in run.of_type("aws:ec2/subnet:Subnet") if "-private-" in r.name}
    assert set(cluster["vpcConfig"]["subnetIds"]) == private
    oidc = run.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").inputs
    assert oidc["url"] == ISSUER and oidc["clientIdLists"] == ["sts.amazonaws.com"]


@pytest.mark.parametrize("stage", STAGES)
def test_subnets_are_tagged_for_load_balancers_and_none_maps_public_ips(stage_runs: dict[str, Run],
                                                                        stage: str) -> None:
    for subnet in stage_runs[stage].of_type("aws:ec2/subnet:Subnet"):
        tags = subnet.inputs["tags"]
        assert subnet.inputs["mapPublicIpOnLaunch"] is False
        assert tags[f"kubernetes.io/cluster/aistack-{stage}"] == "shared"
        role = "kubernetes.io/role/internal-elb" if "-private-" in subnet.name else "kubernetes.io/role/elb"
        assert tags[role] == "1"
    private_routes = [r for r in stage_runs[stage].of_type("aws:ec2/route:Route") if "-private-" in r.name]
    assert all("natGatewayId" in r.inputs and "gatewayId" not in r.inputs for r in private_routes)


@pytest.mark.parametrize("stage", STAGES)
def test_gpu_node_groups_carry_the_operators_label_and_taint(stage_runs: dict[str, Run], stage: str) -> None:
    run = stage_runs[stage]
    groups = stage_yaml(stage)["aistack:cluster"]["gpuNodeGroups"]
    for cfg in groups:
        [ng] = [r.inputs for r in run.of_type(NODE_GROUP) if r.name.endswith(f"-gpu-{cfg['name']}")]
        assert ng["labels"] == gpu_node_labels(cfg["gpuType"])
        assert ng["labels"][GPU_TYPE_LABEL] == cfg["gpuType"]
        assert ng["taints"] == [{"key": GPU_TAINT_KEY, "value": "present", "effect": "NO_SCHEDULE"}]
        assert ng["instanceTypes"] == cfg["instanceTypes"]
        assert ng["amiType"] == "AL2023_x86_64_NVIDIA"
        assert ng["diskSize"] == cfg["diskSizeGb"]
        assert ng["scalingConfig"] == {"minSize": cfg["minSize"], "maxSize": cfg["maxSize"],
                                       "desiredSize": cfg["desiredSize"]}
        assert ng["capacityType"] == ("SPOT" if stage == "dev" else "ON_DEMAND")
    system = run.one(NODE_GROUP, "-system").inputs
    assert "taints" not in system and GPU_TYPE_LABEL not in system["labels"]


@pytest.mark.parametrize("stage", STAGES)
def test_device_plugin_tolerates_the_gpu_taint_and_gp3_is_the_default_class(stage_runs: dict[str, Run],
                                                                            stage: str) -> None:
    run = stage_runs[stage]
    release = run.one("kubernetes:helm.sh/v3:Release").inputs
    assert release["chart"] == "nvidia-device-plugin"
    assert {"key": GPU_TAINT_KEY,
            "operator": "Exists", "effect": "NoSchedule"} in release["values"]["tolerations"]
    terms = release[
        "values"][
            "affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    expr = terms[0]["matchExpressions"][0]
    any_gpu_labels = gpu_node_labels("any")
    assert any_gpu_labels[expr["key"]] in expr["values"]
    sc = run.one("kubernetes:storage.k8s.io/v1:StorageClass").inputs
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == "ebs.csi.aws.com"
    assert sc["parameters"]["type"] == "gp3" and sc["parameters"]["encrypted"] == "true"
    addon = run.one("aws:eks/addon:Addon").inputs
    assert addon["addonName"] == "aws-ebs-csi-driver"
    ebs_trust = json.loads(run.one("aws:iam/role:Role", "ebs-csi").inputs["assumeRolePolicy"])
    cond = ebs_trust["Statement"][0]["Condition"]
    subject = cond["StringLike"][f"{ISSUER.removeprefix('https://')}:sub"]
    assert subject == "system:serviceaccount:kube-system:ebs-csi-controller-sa"


@pytest.mark.parametrize("stage", STAGES)
def test_buckets_are_encrypted_versioned_private_tls_only_with_lifecycle(stage_runs: dict[str, Run],
                                                                         stage: str) -> None:
    run = stage_runs[stage]
    stores_key = run.one("aws:kms/key:Key", "stores")
    days = stage_yaml(stage)["aistack:stores"]["noncurrentVersionDays"]
    for bucket in run.of_type("aws:s3/bucket:Bucket"):
        name = bucket.name
        assert bucket.inputs["forceDestroy"] is (stage == "dev")
        block = run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", name).inputs
        assert all(block[k] is True
                   for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                             "restrictPublicBuckets"))
        sse = run.one(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", name)
        default = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert default == {"sseAlgorithm": "aws:kms",
                           "kmsMasterKeyId": f"arn:aws:kms:us-west-2:123456789012:{stores_key.name}"}
        assert run.one(
            "aws:s3/bucketVersioning:BucketVersioning", name).inputs[
                "versioningConfiguration"] == {"status": "Enabled"}
        rule = run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                       name).inputs["rules"][0]
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": days}
        policy = json.loads(run.one("aws:s3/bucketPolicy:BucketPolicy", name).inputs["policy"])
        [deny] = policy["Statement"]
        assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert set(deny["Resource"]) == {f"arn:aws:s3:::{name}-20261126", f"arn:aws:s3:::{name}-20261126/*"}


@pytest.mark.parametrize("stage", STAGES)
def test_database_is_encrypted_private_reachable_only_from_nodes(stage_runs: dict[str, Run],
                                                                 stage: str) -> None:
    run = stage_runs[stage]
    db = run.one(RDS).inputs
    cfg = stage_yaml(stage)["aistack:stores"]["database"]
    assert db["engine"] == "postgres" and db["storageEncrypted"] is True and db["publiclyAccessible"] is False
    assert db["kmsKeyId"].endswith(run.one("aws:kms/key:Key", "stores").name)
    assert db["multiAz"] is cfg["multiAz"] and db["deletionProtection"] is cfg["deletionProtection"]
    assert db["backupRetentionPeriod"] == cfg["backupRetentionDays"]
    assert db["instanceClass"] == cfg["instanceClass"]
    assert db["skipFinalSnapshot"] is (not cfg["deletionProtection"])
    assert is_secret_value(db["password"]) and db["password"]["value"] == PASSWORD
    subnet_group = run.one("aws:rds/subnetGroup:SubnetGroup").inputs
    assert subnet_group["subnetIds"] and all("-private-" in s for s in subnet_group["subnetIds"])
    [ingress] = run.one("aws:ec2/securityGroup:SecurityGroup", "-db").inputs["ingress"]
    assert ingress["securityGroups"] == ["sg-cluster0123"]
    assert (ingress["fromPort"], ingress["toPort"]) == (5432, 5432)
    assert "cidrBlocks" not in ingress
    params = run.one("aws:rds/parameterGroup:ParameterGroup").inputs
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in params["parameters"]


def test_prod_protects_and_replicates_what_dev_does_not(stage_runs: dict[str, Run]) -> None:
    dev, prod = stage_runs["dev"].one(RDS).inputs, stage_runs["prod"].one(RDS).inputs
    assert (prod["multiAz"], prod["deletionProtection"]) == (True, True)
    assert (dev["multiAz"], dev["deletionProtection"]) == (False, False)
    assert stage_runs["prod"].one(EKS).inputs["deletionProtection"] is True
    assert len(stage_runs["dev"].of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(stage_runs["prod"].of_type("aws:ec2/natGateway:NatGateway")) == 3
    dev_gpus = [r.inputs["capacityType"] for r in stage_runs["dev"].of_type(NODE_GROUP) if "gpu" in r.name]
    assert dev_gpus == ["SPOT"]


@pytest.mark.parametrize("stage", STAGES)
def test_irsa_roles_grant_one_bucket_each_to_one_service_account_pattern(stage_runs: dict[str, Run],
                                                                         stage: str) -> None:
    run = stage_runs[stage]
    issuer = ISSUER.removeprefix("https://")
    expected = {"gateway": ("*-gateway", "documents", False),
                "mlflow": ("*-tracking", "mlflow-artifacts", True)}
    for role_name, (sa, bucket, write) in expected.items():
        trust = json.loads(run.one("aws:iam/role:Role", f"-{role_name}").inputs["assumeRolePolicy"])
        cond = trust["Statement"][0]["Condition"]
        assert cond["StringLike"] == {f"{issuer}:sub": f"system:serviceaccount:aistack:{sa}"}
        assert cond["StringEquals"] == {f"{issuer}:aud": "sts.amazonaws.com"}
        policy = json.loads(run.one("aws:iam/rolePolicy:RolePolicy", f"-{role_name}").inputs["policy"])
        resources = {r for s in policy["Statement"]
                     for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])}
        assert all(bucket in r or ":kms:" in r for r in resources), resources
        actions = {a for s in policy["Statement"] for a in s["Action"]}
        assert ("s3:PutObject" in actions) is write
        assert not any(a.endswith("*") for a in actions)


@pytest.mark.parametrize("stage", STAGES)
def test_stack_outputs_and_secrets(stage_runs: dict[str, Run], stage: str) -> None:
    run = stage_runs[stage]
    out = run.outputs
    assert {"kubeconfig", "clusterName", "documentsBucket", "artifactsBucket",
            "mlflowBackendEndpoint"} <= set(out)
    assert "kubeconfig" in run.secret_outputs
    assert not ({"clusterName", "documentsBucket", "mlflowBackendEndpoint"} & run.secret_outputs)
    assert out["clusterName"] == f"aistack-{stage}"
    assert out["mlflowBackendEndpoint"].endswith(":5432")
    assert out["mlflowArtifactUri"] == f"s3://{out['artifactsBucket']}/mlflow"
    kubeconfig = json.loads(out["kubeconfig"])
    user = kubeconfig["users"][0]["user"]["exec"]
    assert user["command"] == "aws" and "--cluster-name" in user["args"] and "us-west-2" in user["args"]
    assert kubeconfig["clusters"][0]["cluster"]["server"].startswith("https://")
    assert "gatewayUrl" not in out  # no AIStack is declared by the stage configs
    assert PASSWORD not in json.dumps({k: v for k, v in out.items() if k not in run.secret_outputs})


@pytest.mark.parametrize("stage", STAGES)
def test_mlflow_backend_secret_holds_the_uri_as_a_pulumi_secret(stage_runs: dict[str, Run],
                                                                stage: str) -> None:
    secret = stage_runs[stage].one("kubernetes:core/v1:Secret").inputs
    assert secret["metadata"]["name"] == "mlflow-backend"
    assert secret["metadata"]["namespace"] == "aistack"
    assert is_secret_value(secret["stringData"])
    uri = secret["stringData"]["value"]["uri"]
    assert uri == f"postgresql://mlflow:{PASSWORD}@mlflow.abc123.us-west-2.rds.amazonaws.com:5432/mlflow?sslmode=require"


def test_nothing_in_the_program_invokes_a_provider_function() -> None:
    """Invokes (data sources) would need a cloud at preview; the mocks fail on any of them,
    and the program source uses none."""
    source = (ROOT / "stacks" / "__main__.py").read_text() + "".join(p.read_text()
                                                                     for p in (ROOT / "platform").glob(
                                                                             "*.py"))
    assert ".get_availability_zones(" not in source and "invoke(" not in source
    assert Path(ROOT / "crds" / "aistack.dev_aistacks.yaml").is_file()


def test_program_only_wires_components() -> None:
    """Resources live in components; the program imports no provider SDK."""
    source = (ROOT / "stacks" / "__main__.py").read_text()
    assert "pulumi_aws" not in source and "pulumi_kubernetes" not in source and "pulumi_random" not in source


def test_policy_pack_registers_the_tested_checks() -> None:
    pack = (ROOT / "stacks" / "policy")
    assert yaml.safe_load((pack / "PulumiPolicy.yaml").read_text())["runtime"]["name"] == "python"
    source = (pack / "__main__.py").read_text()
    assert "PolicyPack(" in source and "policies=build_policies()" in source
