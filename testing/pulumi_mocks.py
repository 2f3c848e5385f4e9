"""Run the real Pulumi program (`stacks/__main__.py`) under Pulumi's mock runtime (for tests).

There is no Pulumi CLI, engine or cloud here: `pulumi.runtime.set_mocks` stands in for the
engine. The mocks record every registered resource and answer what a provider would compute
(ARNs, the EKS endpoint and CA, the OIDC issuer, the RDS address, the random password),
because mocks echo inputs but invent nothing. Each stage runs with its own `Pulumi.<stage>.yaml`.

The project folder (where Pulumi.yaml is) comes from the caller: the harness is a distribution
of its own and may be installed anywhere, so it cannot know where a checkout is.
"""

from __future__ import annotations

import asyncio
import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pulumi
import yaml
from pulumi.runtime import settings
from pulumi.runtime.mocks import MockMonitor
from pulumi.runtime.stack import Stack, run_pulumi_func

PROGRAM = Path("stacks") / "__main__.py"
"""The Pulumi program, relative to the project folder."""
STAGES = ("dev", "staging", "prod")
SECRET_SIG = "4dabf18193072939515e22adb298388d"
PASSWORD = "Pa55wordFromRandom0123456789abcdefABCDEF"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"


@dataclass
class Res:
    """One registered resource: its type, logical name, inputs, provider reference and URN."""

    type: str
    name: str
    inputs: dict[str, Any]
    provider: str
    urn: str = ""

    @property
    def parent_type(self) -> str:
        """Type of the parent component, read from the URN's type chain."""
        chain = self.urn.split("::")[2].split("$")
        return chain[-2] if len(chain) > 1 else ""


@dataclass
class Run:
    resources: list[Res] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)

    def of_type(self, type_: str) -> list[Res]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_contains: str = "") -> Res:
        found = [r for r in self.of_type(type_) if name_contains in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_contains}*, got {[r.name for r in found]}"
        return found[0]


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs, add the outputs real providers compute, record everything."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.run.resources.append(Res(args.typ, args.name, dict(args.inputs), args.provider or ""))
        out = dict(args.inputs)
        arn = f"arn:aws:{args.typ.split(':')[1].split('/')[0]}:us-west-2:123456789012:{args.name}"
        t = args.typ
        if t.startswith("aws:"):
            out.setdefault("arn", arn)
        if t in ("aws:iam/role:Role", "aws:rds/subnetGroup:SubnetGroup",
                 "aws:rds/parameterGroup:ParameterGroup"):
            out.setdefault("name", f"{args.name}-0a1b2c")
        if t == "aws:ec2/vpc:Vpc":
            out["cidrBlock"] = args.inputs["cidrBlock"]
        if t == "aws:eks/cluster:Cluster":
            out["endpoint"] = "https://EXAMPLE.gr7.us-west-2.eks.amazonaws.com"
            out["certificateAuthority"] = {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"}
            out["identities"] = [{"oidcs": [{"issuer": ISSUER}]}]
            out["vpcConfig"] = {**args.inputs["vpcConfig"], "clusterSecurityGroupId": "sg-cluster0123"}
        if t == "aws:s3/bucket:Bucket":
            out["bucket"] = args.inputs["bucketPrefix"] + "20261126"
            out["arn"] = f"arn:aws:s3:::{out['bucket']}"
        if t == "aws:rds/instance:Instance":
            out["address"] = "mlflow.abc123.us-west-2.rds.amazonaws.com"
            out["endpoint"] = f"{out['address']}:5432"
        if t == "random:index/randomPassword:RandomPassword":
            out["result"] = PASSWORD
        return f"{args.name}-id", out

    def call(self, args: pulumi.runtime.MockCallArgs) -> NoReturn:
        raise AssertionError(f"the program must not invoke {args.token} (it would need a cloud)")


def stage_config(stage: str, *, project: Path) -> dict[str, Any]:
    """`Pulumi.<stage>.yaml`'s config in the `project` folder, as the engine hands it to a
    program (objects as JSON)."""
    data = yaml.safe_load((_project(project) / f"Pulumi.{stage}.yaml").read_text())["config"]
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def run_program(config: dict[str, Any], *, stack: str, project: Path, run: Run | None = None) -> Run:
    """Run the `project` folder's stacks/__main__.py with `config` and return what it registered
    and exported (into `run` if given, so a caller still sees what was registered when the
    program fails). Call it where no event loop runs (a plain test function): it drives one."""
    program = _project(project) / PROGRAM
    run = run if run is not None else Run()
    loop = _event_loop()
    pulumi.runtime.set_mocks(RecordingMocks(run), project="aistack", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config)
    root = settings.get_root_resource()
    assert isinstance(root, Stack), f"set_mocks left {root!r} as the root resource, not a Stack"

    def main() -> None:
        runpy.run_path(str(program), run_name="__main__")

    loop.run_until_complete(run_pulumi_func(main))
    monitor = settings.get_monitor()
    assert isinstance(monitor, MockMonitor), f"set_mocks left {monitor!r} as the monitor"
    urns = monitor.resources
    by_key = {(u.split("::")[2].split("$")[-1], u.split("::")[3]): u for u in urns}
    for r in run.resources:
        r.urn = by_key[(r.type, r.name)]
    for key, value in root.outputs.items():
        out = pulumi.Output.from_input(value)
        run.outputs[key] = loop.run_until_complete(out.future())
        if loop.run_until_complete(out.is_secret()):
            run.secret_outputs.add(key)
    return run


def _project(folder: Path) -> Path:
    """`folder` when it holds a Pulumi project with its program; else ValueError naming what lacks."""
    missing = [name for name in ("Pulumi.yaml", str(PROGRAM)) if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"{folder} is not the aistack Pulumi project: it has no {' and no '.join(missing)}")
    return folder


def _event_loop() -> asyncio.AbstractEventLoop:
    """The thread's current event loop, which Pulumi's mocks run on; a new one when a caller
    (e.g. a test runner that closed the loop of an async test before) left none set."""
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        loop = policy.new_event_loop()
        policy.set_event_loop(loop)
    if loop.is_running():
        raise RuntimeError("run_program drives the event loop itself: call it outside a running loop")
    return loop


def is_secret_value(value: Any) -> bool:
    """A value that reached a resource as a Pulumi secret."""
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"
