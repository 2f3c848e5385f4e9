"""Pull a model's files into a cache folder: from the Hugging Face Hub, an `s3://` mirror, or a folder.

What the model cache's pull Job runs (`aistack engine pull`, `aistack.api.model_cache`). The
steps, each for a reason:
- list the source's files with their sizes first, so a volume too small is refused before a
  byte moves (`PullExit.TOO_SMALL`, with the sizes), not found full after an hour;
- a folder whose marker records the same files from the same source is current: nothing moves
  (a re-run Job, a restarted pod);
- each file is written under a temporary name and renamed when whole, so a pull cut off halfway
  never leaves a truncated file that vLLM would load; a file already there with its size is kept
  (a retried Job resumes);
- files the source no longer has (an older revision's) are removed, then the marker is written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aistack.api.model_cache import MARKER, PullExit

PARTIAL = ".partial"


class PullError(Exception):
    """A pull that cannot finish; `code` is the exit code the CLI ends with."""

    def __init__(self, code: PullExit, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PullResult:
    files: int
    bytes: int
    pulled_bytes: int
    """Bytes moved by this pull (0 when the folder was current)."""


Fetch = Callable[[str, Path], None]
"""Copy one file of the source (its relative path) to a local path."""


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1024
    raise AssertionError("unreachable")


def pull(model: str, *, source: str, dest: Path, token: str | None = None, revision: str | None = None,
         progress: Callable[[str], None] = lambda _: None) -> PullResult:
    """Make `dest` hold exactly the files of `model` at `source` ("hub", "s3://bucket/prefix" or a
    local folder); raises `PullError`. `revision`: a branch, tag or commit on the hub (an adapter's
    `hf://org/repo@rev`); the default branch when None."""
    files, fetch = _listing(model, source=source, token=token, revision=revision)
    if not files:
        raise PullError(PullExit.NOT_FOUND, f"{_where(model, source)} has no files")
    total = sum(files.values())
    record = {"model": model, "source": source, "files": dict(sorted(files.items()))}
    dest.mkdir(parents=True, exist_ok=True)
    marker = dest / MARKER
    if _current(marker, record, dest):
        progress(f"{model}: {len(files)} files, {human(total)}, already in {dest}")
        return PullResult(files=len(files), bytes=total, pulled_bytes=0)
    marker.unlink(missing_ok=True)
    missing = {path: size for path, size in files.items() if not _has(dest / path, size)}
    needed = sum(missing.values())
    usage = shutil.disk_usage(dest)
    if needed > usage.free:
        raise PullError(PullExit.TOO_SMALL,
                        f"{model} needs {human(needed)} more in {dest} ({human(total)} in all) but the "
                        f"volume has {human(usage.free)} free of {human(usage.total)}: "
                        "raise model.vllm.cache.size")
    progress(f"{model}: {len(files)} files, {human(total)}; pulling {len(missing)} ({human(needed)}) "
             f"from {_where(model, source)}")
    partial = dest / PARTIAL
    done = 0
    try:
        for i, (path, size) in enumerate(sorted(missing.items()), 1):
            target = dest / path
            staging = partial / path
            staging.parent.mkdir(parents=True, exist_ok=True)
            try:
                fetch(path, staging)
            except OSError as err:
                raise PullError(PullExit.UNREACHABLE, f"{path}: {err}; a retry resumes") from None
            got = staging.stat().st_size
            if got != size:
                raise PullError(PullExit.UNREACHABLE, f"{path}: got {got} bytes of {size}; a retry resumes")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, target)
            done += size
            progress(f"pulled {i}/{len(missing)} files, {human(done)} of {human(needed)}")
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _remove_others(dest, set(files))
    marker.write_text(json.dumps(record, indent=1))
    return PullResult(files=len(files), bytes=total, pulled_bytes=done)


def _where(model: str, source: str) -> str:
    return f"the Hugging Face Hub's {model}" if source == "hub" else source


def _has(path: Path, size: int) -> bool:
    return path.is_file() and path.stat().st_size == size


def _current(marker: Path, record: dict[str, Any], dest: Path) -> bool:
    try:
        if json.loads(marker.read_text()) != record:
            return False
    except (OSError, ValueError):
        return False
    return all(_has(dest / path, size) for path, size in record["files"].items())


def _remove_others(dest: Path, keep: set[str]) -> None:
    for path in sorted(dest.rglob("*"), reverse=True):  # files before their folders
        relative = path.relative_to(dest).as_posix()
        if relative == MARKER or relative in keep:
            continue
        if path.is_dir():
            if not any(path.iterdir()):
                path.rmdir()
        elif not any(k.startswith(relative + "/") for k in keep):
            path.unlink()


def _listing(model: str, *, source: str, token: str | None,
             revision: str | None = None) -> tuple[dict[str, int], Fetch]:
    if source == "hub":
        return _hub(model, token=token, revision=revision)
    if source.startswith("s3://"):
        return _s3(source)
    folder = Path(source.removeprefix("file://"))
    if not folder.is_absolute():
        raise PullError(PullExit.NOT_FOUND, f"--source {source!r}: use hub, s3://bucket/prefix or an "
                                            "absolute folder path")
    return _folder(folder)


def _folder(folder: Path) -> tuple[dict[str, int], Fetch]:
    if not folder.is_dir():
        raise PullError(PullExit.NOT_FOUND, f"{folder} is not a folder")
    root = folder.resolve()
    files: dict[str, int] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith(".") and root in path.resolve().parents:
            files[path.relative_to(folder).as_posix()] = path.stat().st_size

    def fetch(relative: str, to: Path) -> None:
        shutil.copyfile(folder / relative, to)

    return files, fetch


def _s3(uri: str) -> tuple[dict[str, int], Fetch]:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    client = boto3.client("s3")  # credentials and endpoint (AWS_ENDPOINT_URL) as boto3 finds them
    files: dict[str, int] = {}
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=f"{prefix}/" if prefix else "")
        for page in pages:
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 if prefix else 0:]
                if relative and not relative.endswith("/"):
                    files[relative] = int(item["Size"])
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "AccessDenied", "403", "404", "AllAccessDisabled"):
            raise PullError(PullExit.NOT_FOUND, f"{uri}: {code} ({err})") from None
        raise PullError(PullExit.UNREACHABLE, f"{uri}: {err}") from None
    except BotoCoreError as err:
        raise PullError(PullExit.UNREACHABLE, f"{uri}: {err}") from None

    def fetch(relative: str, to: Path) -> None:
        key = f"{prefix}/{relative}" if prefix else relative
        try:
            client.download_file(bucket, key, str(to))
        except (ClientError, BotoCoreError) as err:
            raise PullError(PullExit.UNREACHABLE, f"s3://{bucket}/{key}: {err}") from None

    return files, fetch


def _hub(model: str, *, token: str | None, revision: str | None = None) -> tuple[dict[str, int], Fetch]:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(model, revision=revision, files_metadata=True, token=token)
    except (RepositoryNotFoundError, GatedRepoError) as err:
        raise PullError(PullExit.NOT_FOUND, f"{model}: {type(err).__name__} (a gated model needs "
                                            "hfTokenSecretRef with access to it)") from None
    except (HfHubHTTPError, OSError) as err:
        raise PullError(PullExit.UNREACHABLE, f"the Hugging Face Hub: {err}") from None
    files = {s.rfilename: int(s.size or 0) for s in info.siblings or [] if not s.rfilename.startswith(".")}
    revision = info.sha

    def fetch(relative: str, to: Path) -> None:
        try:
            got = hf_hub_download(model, relative, revision=revision, token=token,
                                  local_dir=to.parent / ".hub")  # a real file, not a link into a cache
        except (HfHubHTTPError, OSError) as err:
            raise PullError(PullExit.UNREACHABLE, f"{model}/{relative}: {err}") from None
        shutil.move(got, to)

    return files, fetch
