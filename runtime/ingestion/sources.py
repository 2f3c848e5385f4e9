"""Finding the files to ingest: local folders and files, and `s3://bucket/prefix`.

Each file gets a stable `source` name (the citation and the key for idempotency): a path
relative to the base folder (the manifest's folder for `aistack ingest`), or the full
`s3://bucket/key`. Each target also defines a *scope*, the set of source names it covers,
so `--prune` deletes only documents that a successful listing of that same scope no longer
shows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from aistack.runtime.ingestion.documents import SUPPORTED_SUFFIXES
from aistack.runtime.ingestion.globs import glob_match


@dataclass(frozen=True)
class Target:
    """One thing to ingest, as named on the command line or in `retrieval.sources`."""

    uri: str
    tenant: str | None = None
    include: tuple[str, ...] = ()
    """Glob patterns (relative to the target); empty means every supported file type."""


@dataclass(frozen=True)
class SourceFile:
    source: str
    tenant: str | None
    read: Callable[[], bytes] = field(repr=False, compare=False)


@dataclass
class Listing:
    """What a target holds; `error` set means the listing failed and nothing may be pruned."""

    target: Target
    scope: str
    exact: bool
    files: list[SourceFile] = field(default_factory=list)
    error: str | None = None
    ignored: int = 0

    def covers(self, source: str) -> bool:
        if self.exact:
            return source == self.scope
        return source.startswith(self.scope.rstrip("/") + "/")


def _wanted(relative: str, include: tuple[str, ...]) -> bool:
    if include:
        return any(glob_match(relative, pattern) for pattern in include)
    return PurePosixPath(relative).suffix.lower() in SUPPORTED_SUFFIXES


def source_name(path: Path, base: Path) -> str:
    """`path` relative to `base` (else absolute), made absolute and normalised without following
    symlinks: a file of a mounted ConfigMap is a symlink into a hidden folder that each update
    of the ConfigMap renames, and its name must not change with it."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(os.path.abspath(base)).as_posix()
    except ValueError:
        return absolute.as_posix()


def list_target(target: Target, *, base: Path) -> Listing:
    """List one target; an S3 URI goes to boto3, anything else is a local path."""
    if target.uri.startswith("s3://"):
        return _list_s3(target)
    path = Path(target.uri).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file():
        listing = Listing(target=target, scope=source_name(path, base), exact=True)
        listing.files.append(SourceFile(listing.scope, target.tenant, path.read_bytes))
        return listing
    listing = Listing(target=target, scope=source_name(path, base), exact=False)
    if not path.is_dir():
        listing.error = f"no such file or folder: {path}"
        return listing
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            file = Path(root) / name
            relative = file.relative_to(path).as_posix()
            if name.startswith(".") or not _wanted(relative, target.include):
                listing.ignored += 1
                continue
            listing.files.append(SourceFile(source_name(file, base), target.tenant, file.read_bytes))
    return listing


def _list_s3(target: Target) -> Listing:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = target.uri.removeprefix("s3://").partition("/")
    listing = Listing(target=target, scope=f"s3://{bucket}/{prefix}".rstrip("/"), exact=False)
    client = boto3.client("s3")
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                relative = key[len(prefix):].lstrip("/")
                if key.endswith("/") or not _wanted(relative, target.include):
                    listing.ignored += 1
                    continue
                listing.files.append(SourceFile(f"s3://{bucket}/{key}", target.tenant,
                                                _reader(client, bucket, key)))
    except (BotoCoreError, ClientError) as exc:
        listing.error = f"cannot list {target.uri}: {exc}"
        listing.files.clear()
    return listing


def _reader(client: Any, bucket: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return read
