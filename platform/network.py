"""`Network`: the VPC a GPU cluster and its stores live in.

Nodes and the database sit in private subnets only; public subnets hold the NAT gateways and
the load balancers that Kubernetes creates (tagged so the AWS load balancer controller and the
in-tree controller find them). One NAT for all AZs is the cheap dev choice; one per AZ keeps
private subnets online when an AZ fails.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

import pulumi
import pulumi_aws.ec2 as ec2

from aistack.platform.tags import resource_tags

ELB_ROLE_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_ROLE_TAG = "kubernetes.io/role/internal-elb"


@dataclass(frozen=True, kw_only=True)
class NetworkArgs:
    """What the VPC looks like."""

    stage: str
    cluster_name: str
    """Subnets are tagged `kubernetes.io/cluster/<name>: shared` for load balancer discovery."""
    cidr: str
    availability_zones: list[str]
    nat_gateways: Literal["single", "perAz"]


def subnet_cidrs(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """(public, private) /20 blocks of `cidr`, one of each per AZ, public ones first."""
    blocks = [str(b) for b in ipaddress.ip_network(cidr).subnets(new_prefix=20)]
    if len(blocks) < 2 * count:
        raise ValueError(f"VPC CIDR {cidr} is too small for {count} public and {count} private /20 subnets")
    return blocks[:count], blocks[count : 2 * count]


class Network(pulumi.ComponentResource):
    """VPC with a public and a private subnet per AZ, internet and NAT gateways, and routes."""

    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list[str]]
    private_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aistack:platform:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = resource_tags(stage=args.stage)
        cluster_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        public_cidrs, private_cidrs = subnet_cidrs(args.cidr, len(args.availability_zones))

        vpc = ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        igw = ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public_rt = ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags=tags, opts=child)
        ec2.Route(
            f"{name}-public-default",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )

        public_subnets: list[ec2.Subnet] = []
        private_subnets: list[ec2.Subnet] = []
        nats: list[ec2.NatGateway] = []
        for i, az in enumerate(args.availability_zones):
            public = ec2.Subnet(
                f"{name}-public-{az}",
                vpc_id=vpc.id,
                availability_zone=az,
                cidr_block=public_cidrs[i],
                map_public_ip_on_launch=False,
                tags={**tags, **cluster_tag, ELB_ROLE_TAG: "1", "Name": f"{name}-public-{az}"},
                opts=child,
            )
            ec2.RouteTableAssociation(f"{name}-public-{az}", subnet_id=public.id, route_table_id=public_rt.id,
                                      opts=child)
            public_subnets.append(public)
            if args.nat_gateways == "perAz" or i == 0:
                eip = ec2.Eip(f"{name}-nat-{az}", domain="vpc", tags=tags, opts=child)
                nats.append(
                    ec2.NatGateway(
                        f"{name}-nat-{az}",
                        allocation_id=eip.id,
                        subnet_id=public.id,
                        tags=tags,
                        opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]),
                    )
                )
            private = ec2.Subnet(
                f"{name}-private-{az}",
                vpc_id=vpc.id,
                availability_zone=az,
                cidr_block=private_cidrs[i],
                map_public_ip_on_launch=False,
                tags={**tags, **cluster_tag, INTERNAL_ELB_ROLE_TAG: "1", "Name": f"{name}-private-{az}"},
                opts=child,
            )
            private_rt = ec2.RouteTable(f"{name}-private-{az}", vpc_id=vpc.id, tags=tags, opts=child)
            ec2.Route(
                f"{name}-private-{az}-default",
                route_table_id=private_rt.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[-1].id,
                opts=child,
            )
            ec2.RouteTableAssociation(f"{name}-private-{az}", subnet_id=private.id,
                                      route_table_id=private_rt.id, opts=child)
            private_subnets.append(private)

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public_subnets])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private_subnets])
        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )
