"""Finding the files to ingest: local folders and files, and `s3://bucket/prefix`.

Each file gets a stable `source` name (the citation and the key for idempotency): a path
relative to the base folder (the manifest's folder for `aistack ingest`), or the full
`s3://bucket/key`. Each target also defines a *scope*, the set of source names it covers,
so `--prune` deletes only documents that a successful listing of that same scope no longer
shows.

A local target is confined to its folder: a symlink whose real path leaves it (`docs/passwd.txt
-> /etc/passwd`) is skipped with a reason, never read, in a local folder and a mounted volume
alike. Links that stay inside keep working, as a mounted ConfigMap needs (each key links into
`..data`, itself a link to a hidden folder beside it). A file over the size cap is skipped
unread too (`max_bytes`: one huge file would otherwise hold ingestion, and `aistack up`, for
many minutes).
"""

from __future__ import annotations

import contextlib
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
    size: int | None = None
    """Bytes, when the listing knows them."""


@dataclass
class Listing:
    """What a target holds; `error` set means the listing failed and nothing may be pruned."""

    target: Target
    scope: str
    exact: bool
    files: list[SourceFile] = field(default_factory=list)
    error: str | None = None
    ignored: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(source, reason) of files left unread: a link out of the target's folder, over the size cap."""

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


def format_size(size: int) -> str:
    """`52428800` -> `50.0 MiB`: a size as the reports print it."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} GiB"


def _too_big(size: int, max_bytes: int | None) -> str | None:
    if max_bytes is None or size <= max_bytes:
        return None
    return (f"{format_size(size)} is over the {format_size(max_bytes)} limit per file "
            "(retrieval.maxFileSize, or --max-file-size): not read")


def _leaves(file: Path, root: Path) -> str | None:
    """Why `file` may not be read from the folder `root` (its real path is elsewhere), or None."""
    real = Path(os.path.realpath(file))
    if real == root or real.is_relative_to(root):
        return None
    return f"a symlink to {real}, outside the source folder {root}: not followed"


def list_target(target: Target, *, base: Path, max_bytes: int | None = None) -> Listing:
    """List one target; an S3 URI goes to boto3, anything else is a local path. Files over
    `max_bytes`, and links whose real path leaves the target's folder, are `skipped`."""
    if target.uri.startswith("s3://"):
        return _list_s3(target, max_bytes=max_bytes)
    path = Path(target.uri).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_file():
        listing = Listing(target=target, scope=source_name(path, base), exact=True)
        _add_file(listing, path, root=Path(os.path.realpath(path.parent)), name=listing.scope,
                  max_bytes=max_bytes)
        return listing
    listing = Listing(target=target, scope=source_name(path, base), exact=False)
    if not path.is_dir():
        listing.error = f"no such file or folder: {path}"
        return listing
    root = Path(os.path.realpath(path))
    for folder, dirs, names in os.walk(path):  # a link to a folder is never entered
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            reason = _leaves(Path(folder) / name, root)
            if reason is not None:
                listing.skipped.append((source_name(Path(folder) / name, base), reason))
        for name in sorted(names):
            file = Path(folder) / name
            relative = file.relative_to(path).as_posix()
            if name.startswith(".") or not _wanted(relative, target.include):
                listing.ignored += 1
                continue
            _add_file(listing, file, root=root, name=source_name(file, base), max_bytes=max_bytes)
    return listing


def _add_file(listing: Listing, file: Path, *, root: Path, name: str, max_bytes: int | None) -> None:
    reason = _leaves(file, root)
    size = None
    if reason is None:
        with contextlib.suppress(OSError):  # gone, or a dangling link: the read says why
            size = file.stat().st_size
        if size is not None:
            reason = _too_big(size, max_bytes)
    if reason is not None:
        listing.skipped.append((name, reason))
        return
    listing.files.append(SourceFile(name, listing.target.tenant, _confined_reader(file, root), size))


def _confined_reader(file: Path, root: Path) -> Callable[[], bytes]:
    """Reads `file` after checking again that it stays inside `root`: a link may be repointed
    between the listing and the read."""
    def read() -> bytes:
        reason = _leaves(file, root)
        if reason is not None:
            raise OSError(reason)
        return file.read_bytes()

    return read


def _list_s3(target: Target, *, max_bytes: int | None) -> Listing:
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
                source, size = f"s3://{bucket}/{key}", int(item.get("Size", 0))
                reason = _too_big(size, max_bytes)
                if reason is not None:
                    listing.skipped.append((source, reason))
                    continue
                listing.files.append(SourceFile(source, target.tenant, _reader(client, bucket, key), size))
    except (BotoCoreError, ClientError) as exc:
        listing.error = f"cannot list {target.uri}: {exc}"
        listing.files.clear()
        listing.skipped.clear()
    return listing


def _reader(client: Any, bucket: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    return read
