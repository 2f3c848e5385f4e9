"""The GitOps folder convention, and `aistack init-gitops` which scaffolds it.

```
DIR/
  base/kustomization.yaml        resources: [aistack.yaml]
  base/aistack.yaml              the AIStack every stage starts from
  stages/<stage>/kustomization.yaml
  stages/<stage>/stage.yaml      what the stage owns (merge patch, edited by people)
  stages/<stage>/promoted.yaml   what `aistack promote` moved in (JSON 6902, written by aistack)
```

Argo CD / Flux point one Application / Kustomization at each `stages/<stage>` folder. Each stage
renders into a namespace of its own (`stage_namespaces`), so stages can share a cluster. A stage
owns its name, namespace, replicas, GPU type, endpoints, Secret references, tracking server and its own
evaluation gate; everything else (the behaviour: model, prompts, retrieval, guardrails) moves
between stages only through `aistack promote`. DIR must be self-contained (no resource outside).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from aistack.api.manifests import parse_stack
from aistack.api.types import DNS1123_LABEL
from aistack.api.v1alpha1 import AIStack
from aistack.api.v1alpha1.stack import is_production
from aistack.cli.promotion.kustomize import Renderer, render
from aistack.api.yamlio import dump

DEFAULT_STAGES = ("dev", "staging", "prod")
STAGE_PATCH = "stage.yaml"
PROMOTED_PATCH = "promoted.yaml"
# The namespace stages are named after when the manifest names none.
DEFAULT_NAMESPACE = "aistack"

# Stage-owned fields copied into each stage's patch by `init-gitops`, so a reader sees in one
# file what differs between stages. (Paths in the manifest's camelCase form, under `spec`.)
SCAFFOLD_STAGE_FIELDS: tuple[tuple[str, ...], ...] = (
    ("gateway", "replicas"),
    ("gateway", "autoscaling"),
    ("gateway", "apiKeysSecretRef"),
    ("model", "vllm", "replicas"),
    ("model", "vllm", "gpu", "type"),
    ("model", "openai"),
    ("model", "fallback"),
    ("retrieval", "vectorStore"),
    ("retrieval", "embedder", "baseUrl"),
    ("retrieval", "embedder", "apiKeySecretRef"),
    ("observability", "mlflow"),
    ("evaluation", "thresholds"),
    ("evaluation", "maxRunAgeHours"),
)


class LayoutError(ValueError):
    """A GitOps folder that does not follow the convention; the message says what is missing."""


@dataclass(frozen=True)
class Layout:
    """Paths of one GitOps folder."""

    root: Path

    @property
    def base(self) -> Path:
        return self.root / "base"

    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    def stages(self) -> list[str]:
        folder = self.root / "stages"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def require_stage(self, stage: str) -> Path:
        path = self.stage_dir(stage)
        if not path.is_dir():
            known = ", ".join(self.stages()) or "none"
            raise LayoutError(f"no stage {stage!r} in {self.root} (stages: {known}); "
                              f"scaffold with `aistack init-gitops {self.root} --from STACK.yaml`")
        return path


def effective_stack(layout: Layout, stage: str, *,
                    renderer: Renderer = "auto") -> tuple[dict[str, Any], AIStack]:
    """The rendered AIStack document of a stage (raw, as kustomize gives it) and its model."""
    directory = layout.require_stage(stage)
    docs = [d for d in render(directory, renderer=renderer) if d.get("kind") == "AIStack"]
    if len(docs) != 1:
        raise LayoutError(f"stage {stage!r} renders {len(docs)} AIStacks; the convention is exactly one")
    return docs[0], parse_stack(docs[0], source=f"{directory} (rendered)")


def stage_namespaces(stack_doc: dict[str, Any], *, stages: list[str],
                     overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Each stage's namespace: `overrides` (`--namespace STAGE=NS`), else the manifest's
    namespace with its stage suffix replaced (`ai-prod` -> `ai-dev`), else `<namespace>-<stage>`
    (`aistack-<stage>` when the manifest names none).

    A suffix is `-<stage>` for one of `stages` or the manifest's own `spec.stage`. Raises
    LayoutError for an override of an unknown stage, a name that is no namespace, or two stages
    in one namespace: they would render the same namespace/name, and on one cluster each stage's
    sync would overwrite the other's AIStack.
    """
    overrides = overrides or {}
    unknown = sorted(set(overrides) - set(stages))
    if unknown:
        raise LayoutError(f"--namespace {unknown[0]}=...: no stage {unknown[0]!r} "
                          f"(stages: {', '.join(stages)})")
    namespace = (stack_doc.get("metadata") or {}).get("namespace") or DEFAULT_NAMESPACE
    base = namespace
    own_stage = (stack_doc.get("spec") or {}).get("stage")
    suffixes = {*stages, *([own_stage] if isinstance(own_stage, str) else [])}
    for suffix in sorted(suffixes, key=len, reverse=True):  # `ai-eu-prod` of stage eu-prod is `ai`
        if namespace.endswith(f"-{suffix}") and len(namespace) > len(suffix) + 1:
            base = namespace.removesuffix(f"-{suffix}")
            break
    out = {stage: overrides.get(stage) or f"{base}-{stage}" for stage in stages}
    for stage, name in out.items():
        if len(name) > 63 or not re.fullmatch(DNS1123_LABEL, name):
            given = "--namespace" if stage in overrides else "the derived namespace"
            raise LayoutError(f"{given} {name!r} of stage {stage!r} is not a namespace name (lower-case "
                              "letters, digits and '-', at most 63); set one with --namespace "
                              f"{stage}=NAMESPACE")
    seen: dict[str, str] = {}
    for stage, name in out.items():
        if name in seen:
            raise LayoutError(f"stages {seen[name]!r} and {stage!r} would both render their AIStack into "
                              f"namespace {name!r}: on one cluster each sync would overwrite the other; "
                              "give each stage its own namespace (--namespace STAGE=NAMESPACE)")
        seen[name] = stage
    return out


def scaffold(*, root: Path, stack_doc: dict[str, Any], stages: list[str],
             namespaces: dict[str, str] | None = None) -> list[Path]:
    """Write base/ and one overlay per stage from a manifest; return the files written.

    `namespaces` overrides `stage_namespaces`' rule per stage. Refuses to overwrite an existing
    folder's files: scaffolding is a one-time start.
    """
    stack = parse_stack(stack_doc, source="--from")
    placed = stage_namespaces(stack_doc, stages=stages, overrides=namespaces)
    layout = Layout(root)
    files: dict[Path, str] = {
        layout.base / "kustomization.yaml": dump({"resources": ["aistack.yaml"]}),
        layout.base / "aistack.yaml": dump(_clean_doc(stack_doc)),
    }
    for stage in stages:
        patch = stage_patch(stack_doc, stage=stage, name=stack.name)
        files[layout.stage_dir(stage) / STAGE_PATCH] = dump(patch)
        files[layout.stage_dir(stage) / "kustomization.yaml"] = dump(
            stage_kustomization(promoted=False, namespace=placed[stage]))
    existing = [p for p in files if p.exists()]
    if existing:
        raise LayoutError(f"{root} already has {', '.join(map(str, existing))}; "
                          "scaffold into a new folder or remove them first")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def stage_kustomization(*, promoted: bool, namespace: str | None = None) -> dict[str, Any]:
    """The overlay's kustomization: the base, the stage patch, then the promoted changes.

    The namespace is the stage's (stages often share a cluster), so it lives here, not in base.
    """
    patches: list[dict[str, Any]] = [{"path": STAGE_PATCH, "target": {"kind": "AIStack"}}]
    if promoted:
        patches.append({"path": PROMOTED_PATCH, "target": {"kind": "AIStack"}})
    out: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if namespace:
        out["namespace"] = namespace
    return {**out, "resources": ["../../base"], "patches": patches}


def stage_patch(stack_doc: dict[str, Any], *, stage: str, name: str) -> dict[str, Any]:
    """The merge patch that makes the base into `stage`: its name plus its owned fields."""
    spec = stack_doc.get("spec") or {}
    out: dict[str, Any] = {"stage": stage}
    for path in SCAFFOLD_STAGE_FIELDS:
        value = _get(spec, path)
        if value is not None:
            _set(out, path, copy.deepcopy(value))
    if is_production(stage) and _get(out, ("gateway", "apiKeysSecretRef")) is None:
        # A production gateway is never open (the API refuses it): reference a Secret to create.
        _set(out, ("gateway", "apiKeysSecretRef"), {"name": f"{name}-gateway-keys", "key": "keys"})
    return {"apiVersion": stack_doc["apiVersion"], "kind": "AIStack", "metadata": {"name": name}, "spec": out}


def _clean_doc(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in ("namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields"):
        meta.pop(key, None)
    return out


def _get(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _set(node: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def load_stack_doc(path: Path) -> dict[str, Any]:
    """The single AIStack document of a file, raw (validated, but not defaulted)."""
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    stacks = [d for d in docs if isinstance(d, dict) and d.get("kind") == "AIStack"]
    if len(stacks) != 1:
        raise LayoutError(f"{path}: expected exactly one AIStack, found {len(stacks)}")
    parse_stack(stacks[0], source=str(path))
    return stacks[0]
