"""The aistack platform program: `pulumi up` on a stage's stack (dev, staging, prod).

It only wires components; every stage difference lives in `Pulumi.<stage>.yaml`. The whole
configuration (and the optional AIStack file) is validated before any resource is declared.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import yaml

from aistack.platform.config import load_config, load_stack_file
from aistack.platform.gpu_cluster import GpuCluster, GpuClusterArgs
from aistack.platform.managed_stores import ManagedStores, ManagedStoresArgs
from aistack.platform.operator_install import (
    MLFLOW_BACKEND_SECRET,
    AIStackOperator,
    AIStackOperatorArgs,
    WorkloadAccount,
    operator_image,
    workload_account_name,
)

PROJECT_DIR = Path(__file__).resolve().parents[1]
CRD_FILE = PROJECT_DIR / "crds" / "aistack.dev_aistacks.yaml"

config = load_config()
stack = (
    load_stack_file(PROJECT_DIR / config.operator.stack_file,
                    workload_namespace=config.stores.workload_namespace)
    if config.operator.stack_file
    else None
)
crd = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
name = f"aistack-{config.stage}"

cluster = GpuCluster(
    name,
    GpuClusterArgs(
        stage=config.stage,
        region=config.region,
        cidr=config.network.cidr,
        availability_zones=config.network.availability_zones,
        nat_gateways=config.network.nat_gateways,
        kubernetes_version=config.cluster.kubernetes_version,
        endpoint_public_access=config.cluster.endpoint_public_access,
        public_access_cidrs=config.cluster.public_access_cidrs,
        log_types=config.cluster.log_types,
        log_retention_days=config.cluster.log_retention_days,
        system_nodes=config.cluster.system_nodes,
        gpu_node_groups=config.cluster.gpu_node_groups,
        device_plugin_version=config.cluster.device_plugin_version,
        deletion_protection=config.stage == "prod",
    ),
)
stores = ManagedStores(
    name,
    ManagedStoresArgs(
        stage=config.stage,
        vpc_id=cluster.network.vpc_id,
        private_subnet_ids=cluster.network.private_subnet_ids,
        node_security_group_id=cluster.cluster_security_group_id,
        oidc_provider_arn=cluster.oidc_provider_arn,
        oidc_issuer_url=cluster.oidc_issuer_url,
        database=config.stores.database,
        noncurrent_version_days=config.stores.noncurrent_version_days,
        workload_namespace=config.stores.workload_namespace,
        gateway_service_account=config.stores.gateway_service_account,
        mlflow_service_account=config.stores.mlflow_service_account,
    ),
)
operator = AIStackOperator(
    name,
    AIStackOperatorArgs(
        provider=cluster.provider,
        crd=crd,
        image=operator_image(image=config.operator.image, tag=config.operator.version),
        namespace=config.operator.namespace,
        workload_namespace=config.stores.workload_namespace,
        backend_store_uri=stores.backend_store_uri,
        replicas=config.operator.replicas,
        args=config.operator.args,
        stack=stack,
        workload_accounts={
            "gateway": WorkloadAccount(workload_account_name(config.stores.gateway_service_account),
                                       stores.gateway_role.arn),
            "tracking": WorkloadAccount(workload_account_name(config.stores.mlflow_service_account),
                                        stores.mlflow_role.arn),
        },
    ),
)

pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("clusterName", cluster.cluster_name)
pulumi.export("documentsBucket", stores.documents_bucket)
pulumi.export("artifactsBucket", stores.artifacts_bucket)
pulumi.export("mlflowArtifactUri", stores.artifact_uri)
pulumi.export("mlflowBackendEndpoint", stores.database_endpoint)
pulumi.export("mlflowBackendSecret", MLFLOW_BACKEND_SECRET)
pulumi.export("gatewayRoleArn", stores.gateway_role.arn)
pulumi.export("mlflowRoleArn", stores.mlflow_role.arn)
pulumi.export("gatewayServiceAccount", workload_account_name(config.stores.gateway_service_account))
pulumi.export("trackingServiceAccount", workload_account_name(config.stores.mlflow_service_account))
pulumi.export("operatorImage", operator.image)
if operator.gateway_url is not None:
    pulumi.export("gatewayUrl", operator.gateway_url)
