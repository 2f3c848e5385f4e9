"""`aistack ingest` stays inside its sources and skips files over the size cap, locally and as the
cluster's ingestion Job runs it (its rendered command line, the PVC mounted under `--base`)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from aistack.api.manifests import load_stack
from aistack.cli.main import app
from aistack.operator.render import render
from aistack.operator.render.jobs import INGEST_CONTAINER, MANIFEST_DIR, SOURCES_DIR
from aistack.runtime.local.state import local_retrieval_config, state_dir
from aistack.runtime.retrieval.factory import collection_spec, open_store
from aistack.runtime.retrieval.embedders import LocalEmbedder

REPO = Path(__file__).resolve().parents[3]
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"

runner = CliRunner()


def ingest(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ingest", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


async def stored(manifest: Path, state: Path | None = None) -> set[str]:
    """The sources of every document in the stack's collection."""
    stack = load_stack(manifest)
    config = local_retrieval_config(stack, state=state or state_dir(manifest, stack))
    store = open_store(config, spec=collection_spec(config, stack=stack))
    try:
        return {record.source for record in await store.documents()}
    finally:
        await store.close()


def test_a_link_to_etc_passwd_is_skipped_with_its_reason_and_never_retrievable(
        stack_factory, example_docs: Path, tmp_path: Path, minilm: LocalEmbedder) -> None:
    manifest = stack_factory()
    passwd = tmp_path / "etc" / "passwd"
    passwd.parent.mkdir()
    passwd.write_text(PASSWD)
    (example_docs / "passwd.txt").symlink_to(passwd)
    code, out = ingest(str(manifest))
    assert code == 1, out
    flat = " ".join(out.split())
    assert f"skipped docs/passwd.txt: a symlink to {passwd}, outside the source folder" in flat
    sources = asyncio.run(stored(manifest))
    assert "docs/tenants.md" in sources and "docs/passwd.txt" not in sources


def test_the_ingestion_job_reads_a_pvc_inside_and_refuses_links_out_of_it(
        stack_factory, tmp_path: Path, minilm: LocalEmbedder) -> None:
    """The Job's own command line, with its mount points moved under tmp_path: the PVC at
    `SOURCES_DIR/docs`, the manifest's ConfigMap at `MANIFEST_DIR`."""
    manifest = stack_factory()
    spec = yaml.safe_load(manifest.read_text())
    spec["spec"]["retrieval"]["sources"] = [{"uri": "docs", "volume": {"persistentVolumeClaim": "kb"}}]
    spec["spec"]["retrieval"]["maxFileSize"] = "64Ki"
    manifest.write_text(yaml.safe_dump(spec))
    rendered = render(load_stack(manifest))
    assert rendered.ingestion_job is not None
    job = rendered.manifest(rendered.ingestion_job)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == INGEST_CONTAINER
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts[f"{SOURCES_DIR}/docs"] == "source-0"

    root = tmp_path / "pod"
    pvc = root / SOURCES_DIR.lstrip("/") / "docs"
    shutil.copytree(REPO / "examples" / "docs", pvc)
    (pvc / "guides").mkdir()
    (pvc / "guides" / "tenants.md").symlink_to(Path("..") / "tenants.md")  # inside: read
    passwd = root / "etc" / "passwd"
    passwd.parent.mkdir(parents=True)
    passwd.write_text(PASSWD)
    (pvc / "passwd.txt").symlink_to(passwd)
    (pvc / "huge.txt").write_text("word " * 20_000)  # 100 KB > 64Ki
    configmap = root / MANIFEST_DIR.lstrip("/")
    configmap.mkdir(parents=True)
    (configmap / "aistack.yaml").write_text(manifest.read_text())
    state = tmp_path / "state"
    args = list(container["args"])
    assert args[0] == "ingest"
    i = args.index("--qdrant-url")
    del args[i:i + 2]  # the embedded store stands in for the Qdrant Service
    args = [str(root) + a if a.startswith((SOURCES_DIR, MANIFEST_DIR, "/tmp/")) else a for a in args[1:]]
    args[args.index("--state") + 1] = str(state)
    code, out = ingest(*args)
    flat = " ".join(out.split())
    assert code == 1, out  # the Job fails at once on this code (podFailurePolicy): status says skipped
    assert f"skipped docs/passwd.txt: a symlink to {passwd}, outside the source folder" in flat
    assert "skipped docs/huge.txt: 97.7 KiB is over the 64.0 KiB limit per file" in flat
    sources = asyncio.run(stored(configmap / "aistack.yaml", state))
    assert {"docs/tenants.md", "docs/guides/tenants.md"} <= sources
    assert not sources & {"docs/passwd.txt", "docs/huge.txt"}


def test_max_file_size_comes_from_the_manifest_or_the_flag_and_a_bad_one_is_refused(
        stack_factory, example_docs: Path, minilm: LocalEmbedder) -> None:
    sizes = {p.name: p.stat().st_size for p in example_docs.iterdir()}
    limit = sorted(sizes.values())[len(sizes) // 2]
    manifest = stack_factory()
    code, out = ingest(str(manifest), "--max-file-size", str(limit))
    flat = " ".join(out.split())
    assert code == 1, out
    over = sorted(name for name, size in sizes.items() if size > limit)
    assert over and all(f"skipped docs/{name}: " in flat for name in over)
    assert asyncio.run(stored(manifest)) == {f"docs/{n}" for n, size in sizes.items() if size <= limit}
    code, out = ingest(str(manifest), "--max-file-size", "lots")
    assert code == 2 and "--max-file-size: 'lots' is not a size" in out
    spec = yaml.safe_load(manifest.read_text())
    spec["spec"]["retrieval"]["maxFileSize"] = "1Mi"
    manifest.write_text(yaml.safe_dump(spec))
    code, out = ingest(str(manifest))  # the manifest's 1Mi: every example file fits
    assert code == 0, out
    spec["spec"]["retrieval"]["maxFileSize"] = "0"
    manifest.write_text(yaml.safe_dump(spec))
    code, out = ingest(str(manifest))
    assert code == 2 and "spec.retrieval.maxFileSize: '0' must be at least 1 byte" in out
