"""Shared field types of the AIStack API: names, quantities, secret references.

They live apart from the layer models because every layer uses them, and because the CRD
builder reads their JSON-schema annotations (patterns, int-or-string) to emit a structural
schema that the API server enforces the same way pydantic does.
"""

from __future__ import annotations

import re
import typing
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic.alias_generators import to_camel

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
# Kubernetes resource.Quantity: a signed decimal number with an optional binary (Ki..Ei),
# decimal (n, u, m, k, M..E) or exponent suffix.
QUANTITY = r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"

_QUANTITY_RE = re.compile(QUANTITY)


class ApiModel(BaseModel):
    """Base of every user-facing model: camelCase on the wire, unknown fields refused.

    Attribute docstrings become field descriptions, and so CRD descriptions and
    `kubectl explain` text: the models are the only hand-edited schema.
    """

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The manifest form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models a field annotation holds: `X`, `X | None`, `list[X]`, `dict[str, X]`,
    `Annotated[X, ...]` -> [X]; unions of several models give all of them."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in models_in(arg)]


def _quantity(value: Any) -> str:
    if isinstance(value, bool):
        raise ValueError("must be a Kubernetes quantity such as '50Gi' or '500m', not a boolean")
    if isinstance(value, int | float):
        value = format(value, "g")
    if not isinstance(value, str) or not _QUANTITY_RE.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity (examples: '50Gi', '500m', '2', '1.5')"
        )
    return value


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema({"x-kubernetes-int-or-string": True, "pattern": QUANTITY}),
]
"""A Kubernetes resource quantity ('50Gi', '500m', 2); stored as its string form."""

_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60, "n": Decimal("1e-9"), "u": Decimal("1e-6"),
    "m": Decimal("1e-3"), "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18")}


def quantity_value(quantity: str) -> Decimal:
    """A quantity's number: `'16Mi'` -> 16777216, `'500m'` -> 0.5, `'1e3'` -> 1000."""
    match = re.match(r"^\+?([0-9.]+)(.*)$", quantity)
    if match is None or not _QUANTITY_RE.match(quantity):
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    number, suffix = Decimal(match.group(1)), match.group(2)
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * Decimal(10) ** int(suffix[1:])
    return number * _SUFFIXES.get(suffix, Decimal(1))


DnsLabel = Annotated[str, Field(pattern=DNS1123_LABEL, min_length=1, max_length=63)]
DnsSubdomain = Annotated[str, Field(pattern=DNS1123_SUBDOMAIN, min_length=1, max_length=253)]


class SecretKeyRef(ApiModel):
    """A key of a Secret in the AIStack's namespace.

    Secrets are only ever referenced, never inlined: the operator wires them into pods with
    `secretKeyRef`, and `aistack up` reads them from the environment variable
    `AISTACK_SECRET_<NAME>_<KEY>` (upper-cased, non-alphanumerics as `_`).
    """

    name: DnsSubdomain
    """Name of the Secret."""
    key: Annotated[str, Field(pattern=SECRET_KEY, min_length=1, max_length=253)]
    """Key inside the Secret."""

    def env_name(self) -> str:
        """The environment variable that carries this secret outside Kubernetes."""
        raw = f"AISTACK_SECRET_{self.name}_{self.key}"
        return re.sub(r"[^A-Za-z0-9]", "_", raw).upper()


class LocalObjectRef(ApiModel):
    """A ConfigMap or Secret in the AIStack's namespace, by name."""

    name: DnsSubdomain
    """Name of the object."""


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap in the AIStack's namespace."""

    name: DnsSubdomain
    """Name of the ConfigMap."""
    key: Annotated[str, Field(pattern=SECRET_KEY, min_length=1, max_length=253)]
    """Key inside the ConfigMap."""


class Resources(ApiModel):
    """Compute resources of a container, as in a Kubernetes pod spec."""

    requests: dict[str, Quantity] = Field(default_factory=dict)
    """Minimum resources, e.g. `{cpu: 500m, memory: 1Gi}`."""
    limits: dict[str, Quantity] = Field(default_factory=dict)
    """Maximum resources, e.g. `{memory: 2Gi}`."""


class Storage(ApiModel):
    """A persistent volume claim's size and class."""

    size: Quantity = "10Gi"
    """Requested capacity."""
    storage_class_name: DnsSubdomain | None = None
    """StorageClass; the cluster default when unset."""


class Toleration(ApiModel):
    """A pod toleration, as in a Kubernetes pod spec."""

    key: str | None = None
    """Taint key; empty with operator Exists matches every taint."""
    operator: Literal["Equal", "Exists"] = "Equal"
    """`Equal` or `Exists`."""
    value: str | None = None
    """Taint value for `Equal`."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """`NoSchedule`, `PreferNoSchedule` or `NoExecute`; empty matches all."""
