"""`aistack ingest` end to end: real MiniLM, the embedded Qdrant engine, moto's S3 server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
from typer.testing import CliRunner

from aistack.api.manifests import load_stack
from aistack.cli.main import app
from aistack.runtime.local.state import local_retrieval_config, state_dir
from aistack.runtime.retrieval import build_retriever
from aistack.runtime.retrieval.embedders import LocalEmbedder
from aistack.testing.documents import make_damaged_pdf

REPO = Path(__file__).resolve().parents[3]

runner = CliRunner()


def ingest(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["ingest", *args])
    return result.exit_code, result.output


def row(output: str) -> list[int]:
    """The numbers of the summary table (files, new, changed, unchanged, empty, pruned, chunks, errors)."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 8 and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{output}")


async def search(manifest: Path, query: str, *, tenant: str | None = None, top_k: int = 10) -> list:
    stack = load_stack(manifest)
    retriever = build_retriever(local_retrieval_config(stack, state=state_dir(manifest, stack)))
    try:
        return await retriever.search(query, tenant=tenant, top_k=top_k)
    finally:
        await retriever.close()


def test_ingest_is_idempotent_replaces_changed_files_and_prunes(stack_factory, example_docs: Path,
                                                                minilm: LocalEmbedder) -> None:
    manifest = stack_factory()
    code, out = ingest(str(manifest))  # no PATH: the manifest's sources (docs/)
    assert code == 0, out
    files, new, changed, unchanged, empty, pruned, chunks, errors = row(out)
    assert (files, new, changed, unchanged, errors) == (10, 10, 0, 0, 0) and chunks >= 20

    code, out = ingest(str(manifest), str(example_docs))
    assert code == 0 and row(out) == [10, 0, 0, 10, 0, 0, 0, 0]  # unchanged: nothing written

    (example_docs / "tenants.md").write_text("# Tenants\n\nTenants are called workspaces since version 2.\n")
    (example_docs / "cloud.md").unlink()
    code, out = ingest(str(manifest), str(example_docs))
    assert row(out) == [9, 0, 1, 8, 0, 0, 1, 0]
    hits = asyncio.run(search(manifest, "what are tenants called now?"))
    tenant_texts = [h.text for h in hits if h.source == "docs/tenants.md"]
    assert tenant_texts == ["Tenants\n\nTenants are called workspaces since version 2."]  # old chunks gone
    assert any(h.source == "docs/cloud.md" for h in asyncio.run(search(manifest, "pulumi up EKS cluster")))

    code, out = ingest(str(manifest), str(example_docs), "--prune")
    assert row(out) == [9, 0, 0, 9, 0, 1, 0, 0]
    assert not any(h.source == "docs/cloud.md"
                   for h in asyncio.run(search(manifest, "pulumi up EKS cluster")))


def test_corrupt_files_are_reported_skipped_and_keep_what_was_stored(stack_factory, example_docs: Path,
                                                                     minilm: LocalEmbedder) -> None:
    manifest = stack_factory()
    assert ingest(str(manifest), str(example_docs))[0] == 0
    (example_docs / "guardrails.md").write_bytes(b"\x00\x01 corrupted")
    (example_docs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated garbage")
    (example_docs / "latin1.txt").write_bytes(b"caf\xe9")
    code, out = ingest(str(manifest), str(example_docs), "--prune")
    assert code == 1
    files, new, changed, unchanged, empty, pruned, chunks, errors = row(out)
    assert (files, errors, pruned, unchanged) == (12, 3, 0, 9)
    assert "docs/guardrails.md: binary content" in out and "docs/broken.pdf: unreadable PDF" in out
    assert "docs/latin1.txt: not UTF-8" in out
    hits = asyncio.run(search(manifest, "jailbreak heuristics and blocked terms"))
    assert hits[0].source == "docs/guardrails.md"  # the last good version is still served


def test_tenant_needs_a_tenant_field_and_tenants_are_isolated(stack_factory, tmp_path: Path,
                                                              minilm: LocalEmbedder) -> None:
    acme, globex = tmp_path / "acme", tmp_path / "globex"
    acme.mkdir(), globex.mkdir()
    (acme / "plan.md").write_text("# Plan\n\nAcme's launch code name is BLUEBIRD.\n")
    (globex / "plan.md").write_text("# Plan\n\nGlobex's launch code name is REDFOX.\n")
    plain = stack_factory()
    code, out = ingest(str(plain), str(acme), "--tenant", "acme")
    assert code == 2 and "no retrieval.tenantField" in out

    manifest = stack_factory(tenant_field="tenant")
    assert ingest(str(manifest), str(acme), "--tenant", "acme")[0] == 0
    assert ingest(str(manifest), str(globex), "--tenant", "globex")[0] == 0
    acme_hits = asyncio.run(search(manifest, "launch code name", tenant="acme"))
    assert any("BLUEBIRD" in h.text for h in acme_hits) and not any("REDFOX" in h.text for h in acme_hits)
    globex_hits = asyncio.run(search(manifest, "launch code name", tenant="globex"))
    assert any("REDFOX" in h.text for h in globex_hits) and not any("BLUEBIRD" in h.text for h in globex_hits)
    assert not any("launch code" in h.text
                   for h in asyncio.run(search(manifest, "launch code name", tenant=None)))
    # the same file name under another tenant is another document: pruning one tenant leaves the other
    (acme / "plan.md").unlink()
    code, out = ingest(str(manifest), str(acme), "--tenant", "acme", "--prune")
    assert row(out)[5] == 1
    assert any("REDFOX" in h.text for h in asyncio.run(search(manifest, "launch code name", tenant="globex")))


def test_s3_prefixes_are_ingested_and_pruned(stack_factory, s3_env: str, pdf_bytes: bytes,
                                             minilm: LocalEmbedder) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="kb-docs")
    s3.put_object(Bucket="kb-docs", Key="handbook/vacation.md",
                  Body=b"# Vacation\n\nEveryone gets 30 days of vacation.\n")
    s3.put_object(Bucket="kb-docs", Key="handbook/guide.pdf", Body=pdf_bytes)
    s3.put_object(Bucket="kb-docs", Key="handbook/logo.png", Body=b"\x89PNG")
    s3.put_object(Bucket="kb-docs", Key="other/secret.md", Body=b"# Other\n\nnot in the prefix")
    manifest = stack_factory()
    code, out = ingest(str(manifest), "s3://kb-docs/handbook")
    assert code == 0, out
    assert row(out)[:3] == [2, 2, 0]
    hits = asyncio.run(search(manifest, "how many vacation days?"))
    assert hits[0].source == "s3://kb-docs/handbook/vacation.md" and hits[0].title == "Vacation"
    assert any(h.source == "s3://kb-docs/handbook/guide.pdf" and h.title == "Stack guide" for h in
               asyncio.run(search(manifest, "where are the vectors kept?")))
    assert row(ingest(str(manifest), "s3://kb-docs/handbook")[1])[3] == 2  # unchanged
    s3.delete_object(Bucket="kb-docs", Key="handbook/vacation.md")
    code, out = ingest(str(manifest), "s3://kb-docs/handbook", "--prune")
    assert row(out)[5] == 1


def test_a_missing_bucket_is_an_error_and_prunes_nothing(stack_factory, s3_env: str, example_docs: Path,
                                                         minilm: LocalEmbedder) -> None:
    manifest = stack_factory()
    assert ingest(str(manifest), str(example_docs))[0] == 0
    code, out = ingest(str(manifest), "s3://no-such-bucket/x", "--prune")
    assert code == 1 and "cannot list s3://no-such-bucket/x" in out
    assert row(out)[5] == 0


def test_the_cluster_job_reads_a_configmap_volume_under_base_with_local_names(stack_factory, tmp_path: Path,
                                                                              minilm: LocalEmbedder) -> None:
    """What the ingestion Job does: the manifest in one folder (its ConfigMap), the `docs`
    source mounted from a ConfigMap under `--base`. A ConfigMap volume is the kubelet's
    atomic-writer layout: each key a symlink into `..data`, itself a symlink to a hidden,
    timestamped folder. The documents get the names a local run gives them."""
    manifest = stack_factory()
    mounted = tmp_path / "sources" / "docs"
    revision = mounted / "..2026_11_26_23_00_00.000000001"
    shutil.copytree(REPO / "examples" / "docs", revision)
    (mounted / "..data").symlink_to(revision.name)
    for file in sorted(revision.iterdir()):
        (mounted / file.name).symlink_to(Path("..data") / file.name)
    job_folder = tmp_path / "manifest"
    job_folder.mkdir()
    job_manifest = job_folder / "aistack.yaml"
    job_manifest.write_text(manifest.read_text())
    state = tmp_path / "state"
    code, out = ingest(str(job_manifest), "--base", str(tmp_path / "sources"), "--state", str(state))
    assert code == 0, out
    files, new, *_, errors = row(out)
    assert (files, new, errors) == (10, 10, 0)  # the hidden revision folder is not read twice
    stack = load_stack(job_manifest)

    async def sources() -> set[str]:
        retriever = build_retriever(local_retrieval_config(stack, state=state))
        try:
            return {h.source
                    for h in await retriever.search("how are tenants isolated?", tenant=None, top_k=20)}
        finally:
            await retriever.close()

    assert "docs/tenants.md" in asyncio.run(sources())
    # The ConfigMap is updated: the kubelet writes a new hidden folder and repoints `..data`.
    update = mounted / "..2026_11_27_08_00_00.000000002"
    shutil.copytree(revision, update)
    (update / "tenants.md").write_text("# Tenants\n\nTenants are called workspaces since version 2.\n")
    (mounted / "..data").unlink()
    (mounted / "..data").symlink_to(update.name)
    shutil.rmtree(revision)
    code, out = ingest(str(job_manifest), "--base", str(tmp_path / "sources"), "--state", str(state))
    assert code == 0 and row(out)[:4] == [10, 0, 1, 9]  # one changed, no new names
    code, out = ingest(str(job_manifest), "--base", str(tmp_path / "nowhere"))
    assert code == 2 and "--base" in out


def test_outside_a_terminal_ingest_prints_its_stages_and_reports_a_damaged_pdf_in_its_own_words(
        stack_factory, example_docs: Path) -> None:
    """A real process, stderr a pipe: pypdf's raw records would reach Python's last-resort
    handler there (under pytest they would go to its log capture instead)."""
    manifest = stack_factory()
    (example_docs / "damaged.pdf").write_bytes(make_damaged_pdf(["Qdrant keeps the vectors on disk."]))
    (example_docs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated garbage")
    done = subprocess.run([sys.executable, "-m", "aistack.cli", "ingest", str(manifest)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1, done.stderr  # broken.pdf is skipped, as before
    lines = done.stderr.splitlines()
    assert lines[:1] == ["loading the embedder (sentence-transformers/all-MiniLM-L6-v2) ..."]
    assert "listing docs ..." in lines and "ingesting 12 file(s) ..." in lines
    [note] = [line for line in lines if "damaged.pdf" in line]
    assert note.startswith("note docs/damaged.pdf: damaged PDF, read after ") and note.endswith(
        "repair(s) by the parser; re-export it if its text looks incomplete in answers")
    assert "skipped docs/broken.pdf: unreadable PDF (PdfStreamError: Stream has ended unexpectedly)" in lines
    for raw in ("wrong pointing object", "Object 2 0 found", "startxref", "pypdf"):
        assert raw not in done.stderr and raw not in done.stdout
    assert row(done.stdout) == [12, 11, 0, 0, 0, 0, row(done.stdout)[6], 1]
    hits = asyncio.run(search(manifest, "where are the vectors kept?"))
    assert "docs/damaged.pdf" in {h.source for h in hits}  # the repaired text was ingested
