"""The aistack policy pack: `pulumi preview --policy-pack stacks/policy`.

The checks live in `aistack.platform.policies` as plain functions (tested without an engine);
this file only registers them. Constructing PolicyPack starts the policy gRPC server, so it
is never imported by tests.
"""

from pulumi_policy import PolicyPack

from aistack.platform.policies import build_policies

PolicyPack(name="aistack-platform", policies=build_policies())
