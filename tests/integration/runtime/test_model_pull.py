"""The model cache's pull (`aistack engine pull`, what the pull Job runs) for real: from a folder and
from an S3 mirror on moto's S3 server, through the CLI as the Job calls it, and the pull's own
guarantees (a current folder moves nothing, an interrupted pull resumes and leaves no partial
file, a volume too small is refused before a byte moves). The Hugging Face Hub itself cannot be
reached from here: its listing and download are not exercised."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import boto3
import pytest

from aistack.api.model_cache import MARKER, PullCommand, PullExit, cached_model_dir
from aistack.runtime.engine import pull as pull_module
from aistack.runtime.engine.pull import PARTIAL, PullError, pull

MODEL = "acme/tiny-model"
FILES = {"config.json": b'{"architectures": ["LlamaForCausalLM"]}', "tokenizer.json": b"{}" * 500,
         "model-00001-of-00002.safetensors": os.urandom(300_000),
         "model-00002-of-00002.safetensors": os.urandom(200_000), "sub/extra.txt": b"nested"}


def mirror(folder: Path, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def pull_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aistack.cli", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


def contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.name != MARKER}


def test_a_folder_pulls_once_then_follows_its_source(tmp_path: Path) -> None:
    source = mirror(tmp_path / "src")
    (source / ".hidden").write_text("not a model file")
    (tmp_path / "secret").write_text("outside")
    (source / "link").symlink_to(tmp_path / "secret")  # leaves the source folder: not pulled
    dest = tmp_path / cached_model_dir(MODEL, root="cache").lstrip("/")
    args = PullCommand(model=MODEL, source=str(source), dest=str(dest)).args()

    first = pull_cli(*args)
    assert first.returncode == PullExit.CACHED, first.stderr
    assert contents(dest) == FILES
    assert json.loads((dest / MARKER).read_text())["files"]["config.json"] == len(FILES["config.json"])
    assert not (dest / PARTIAL).exists()
    assert "pulled 5/5 files" in first.stderr

    again = pull_cli(*args)
    assert again.returncode == 0 and "already current" in again.stdout and "pulled" not in again.stderr

    (source / "tokenizer.json").write_bytes(b"[]" * 700)  # a new revision: one file changed, one gone
    (source / "sub" / "extra.txt").unlink()
    third = pull_cli(*args)
    assert third.returncode == 0, third.stderr
    assert "pulling 1 " in third.stderr
    assert contents(dest) == {**{k: v for k, v in FILES.items() if k != "sub/extra.txt"},
                              "tokenizer.json": b"[]" * 700}
    assert not (dest / "sub").exists()


def test_an_s3_mirror_pulls_through_the_cli_as_the_job_runs_it(tmp_path: Path, s3_env: str) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="weights")
    for name, data in FILES.items():
        s3.put_object(Bucket="weights", Key=f"mirror/{MODEL}/{name}", Body=data)
    s3.put_object(Bucket="weights", Key=f"mirror/{MODEL}-other/config.json", Body=b"{}")  # a sibling prefix
    dest = tmp_path / "cache"
    done = pull_cli(*PullCommand(model=MODEL, source=f"s3://weights/mirror/{MODEL}", dest=str(dest)).args())
    assert done.returncode == PullExit.CACHED, done.stderr
    assert contents(dest) == FILES

    missing_bucket = pull_cli(*PullCommand(model=MODEL, source="s3://no-such-bucket/x",
                                           dest=str(dest)).args())
    assert missing_bucket.returncode == PullExit.NOT_FOUND
    assert "NoSuchBucket" in missing_bucket.stderr and "Traceback" not in missing_bucket.stderr
    empty = pull_cli(*PullCommand(model=MODEL, source="s3://weights/nothing-here", dest=str(dest)).args())
    assert empty.returncode == PullExit.NOT_FOUND and "has no files" in empty.stderr
    assert contents(dest) == FILES  # a failed pull leaves the cached model as it was


def test_an_interrupted_pull_keeps_whole_files_only_and_resumes(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    source = mirror(tmp_path / "src")
    dest = tmp_path / "dest"
    real_copy = shutil.copyfile
    copied: list[str] = []

    def flaky(src: str | Path, dst: str | Path) -> None:
        if len(copied) == 2:
            Path(dst).write_bytes(b"half a file")
            raise OSError("connection reset")
        copied.append(str(src))
        real_copy(src, dst)

    monkeypatch.setattr(shutil, "copyfile", flaky)
    with pytest.raises(PullError, match="connection reset; a retry resumes") as failed:
        pull(MODEL, source=str(source), dest=dest)
    assert failed.value.code == PullExit.UNREACHABLE
    assert len(contents(dest)) == 2 and all(contents(dest)[k] == FILES[k] for k in contents(dest))
    assert not (dest / PARTIAL).exists() and not (dest / MARKER).exists()

    monkeypatch.setattr(shutil, "copyfile", real_copy)
    result = pull(MODEL, source=str(source), dest=dest)
    assert contents(dest) == FILES
    assert result.pulled_bytes == sum(len(v) for v in FILES.values()) - sum(
        len(FILES[Path(c).relative_to(source).as_posix()]) for c in copied)


def test_a_volume_too_small_is_refused_before_a_byte_moves(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    source = mirror(tmp_path / "src")
    dest = tmp_path / "dest"
    need = sum(len(v) for v in FILES.values())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(pull_module.shutil, "disk_usage", lambda _: usage(need, 1, need - 1))
    with pytest.raises(PullError) as refused:
        pull(MODEL, source=str(source), dest=dest)
    assert refused.value.code == PullExit.TOO_SMALL
    assert "raise model.vllm.cache.size" in str(refused.value)
    assert list(dest.iterdir()) == []


def test_bad_sources_are_refused_with_the_reason(tmp_path: Path) -> None:
    relative = pull_cli(*PullCommand(model=MODEL, source="models/here", dest=str(tmp_path / "d")).args())
    assert relative.returncode == PullExit.NOT_FOUND and "absolute folder path" in relative.stderr
    absent = pull_cli(*PullCommand(model=MODEL, source=str(tmp_path / "none"),
                                   dest=str(tmp_path / "d")).args())
    assert absent.returncode == PullExit.NOT_FOUND and "is not a folder" in absent.stderr
