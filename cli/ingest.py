"""`aistack ingest STACK.yaml [PATH...]`: load documents into the stack's collection."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from aistack.cli.progress import Stages

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def ingest_cmd(
    manifest: Annotated[Path, typer.Argument(help="The AIStack manifest.", show_default=False)],
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH", help="Files, folders or s3://bucket/prefix URIs; the manifest's retrieval.sources "
                             "when omitted.",
        show_default=False)] = None,
    prune: Annotated[bool, typer.Option("--prune", help="Delete stored documents that the given paths no longer hold.")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", metavar="NAME", help="Tenant stamped on every chunk (needs retrieval.tenantField).")] = None,
    state: Annotated[Path | None, typer.Option("--state", metavar="DIR", help="State folder (default: <manifest folder>/.aistack/<name>).")] = None,
    qdrant_url: Annotated[str | None, typer.Option("--qdrant-url", metavar="URL", help="A Qdrant server instead of the embedded store.")] = None,
    base: Annotated[Path | None, typer.Option("--base", metavar="DIR", help="Folder the sources' relative paths start from "
                                              "(default: the manifest's folder).")] = None,
) -> None:
    """Ingest documents into the stack's collection.

    Reads .md/.txt/.html/.pdf files, local or on S3. Re-running is cheap: unchanged files
    write nothing, changed files replace their chunks, and --prune removes documents deleted
    from the given paths. Unreadable files are reported and skipped. Exit code 0: all files
    ingested; 1: some were skipped with errors; 2: nothing could be done (bad manifest, store
    or embedder unavailable).
    """
    from aistack.api.manifests import ManifestError, load_stack
    from aistack.runtime.ingestion.pipeline import IngestionError
    from aistack.runtime.ingestion.sources import Target
    from aistack.runtime.local.state import StateBusy, StateLock, local_retrieval_config, state_dir
    from aistack.runtime.retrieval.embedders import EmbeddingError
    from aistack.runtime.retrieval.store import StoreError

    try:
        stack = load_stack(manifest)
    except ManifestError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    if stack.spec.retrieval is None:
        err.print(f"{manifest}: spec.retrieval: the stack has no retrieval layer, so there is nothing to ingest into")
        raise typer.Exit(2)
    base = (base or manifest.parent).resolve()
    if not base.is_dir():
        err.print(f"--base: {base} is not a folder")
        raise typer.Exit(2)
    if paths:
        targets = [Target(uri=p if p.startswith("s3://") else str(Path(p).resolve()), tenant=tenant) for p in paths]
    else:
        sources = stack.spec.retrieval.sources
        if not sources:
            err.print("no PATH given and the manifest declares no retrieval.sources: name what to ingest")
            raise typer.Exit(2)
        targets = [Target(uri=s.uri, tenant=tenant or s.tenant, include=tuple(s.include)) for s in sources]
    folder = state_dir(manifest, stack, state)
    config = local_retrieval_config(stack, state=folder, qdrant_url=qdrant_url)
    # the embedded store lives in the state folder: a running `aistack up` owns it, so say so
    # now rather than after loading the embedder
    owner = contextlib.nullcontext() if qdrant_url else StateLock(folder, command="aistack ingest")
    try:
        with owner:
            report = asyncio.run(_run(stack=stack, config=config, targets=targets, base=base, prune=prune))
    except StateBusy as exc:
        err.print(f"{exc.holder}: ingest when it has stopped (`aistack up` ingests retrieval.sources itself "
                  "when it starts)", markup=False)
        raise typer.Exit(2) from None
    except (IngestionError, StoreError, EmbeddingError) as exc:
        err.print(f"ingest failed, nothing more was written: {exc}", markup=False)
        raise typer.Exit(2) from None
    out.print(summary(report, collection=config.collection))
    for source, note in report.warnings:
        err.print(f"[yellow]note[/yellow] {escape(source)}: {escape(note)}")
    for source, reason in report.errors:
        err.print(f"[red]skipped[/red] {source}: {reason}")
    if report.errors:
        raise typer.Exit(1)


async def _run(*, stack, config, targets, base, prune):  # type: ignore[no-untyped-def]
    from aistack.runtime.ingestion.pipeline import Ingestor
    from aistack.runtime.retrieval.embedders import build_embedder
    from aistack.runtime.retrieval.factory import collection_spec, open_store

    store = open_store(config, spec=collection_spec(config, stack=stack))
    try:
        with Stages(err) as stages:
            stages.begin(f"loading the embedder ({config.embedder.model})")
            embedder = await asyncio.to_thread(build_embedder, config.embedder)
            stages.begin("listing " + ", ".join(t.uri for t in targets))
            bar = _FileProgress(err)
            ingestor = Ingestor(store=store, embedder=embedder, chunking=config.chunking, base=base,
                                on_progress=bar.advance)
            listings = await asyncio.to_thread(ingestor.list, targets)
            total = sum(len(x.files) for x in listings)
            if stages.interactive:
                stages.end()
                with bar.showing(total):
                    return await ingestor.ingest(listings, prune=prune)
            stages.begin(f"ingesting {total} file(s)")
            return await ingestor.ingest(listings, prune=prune)
    finally:
        await store.close()


class _FileProgress:
    """The files as they are ingested: a bar on a terminal (the file count is known after
    listing); elsewhere nothing per file, since the stage line and the summary say enough."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @contextlib.contextmanager
    def showing(self, total: int) -> Iterator[None]:
        self._progress = Progress(SpinnerColumn(), TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), TextColumn("{task.fields[last]}"), console=self.console,
                                  transient=True)
        self._task = self._progress.add_task("ingesting", total=total, last="")
        with self._progress:
            yield
        self._progress = None

    def advance(self, source: str, status: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1 if status != "pruned" else 0, last=f"{status}: {source}")


def summary(report, *, collection: str) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=f"ingested into {collection!r} in {report.seconds:.1f} s")
    for column in ("files", "new", "changed", "unchanged", "empty", "pruned", "chunks written", "skipped (errors)"):
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in (report.files, report.new, report.changed, report.unchanged, report.empty,
                                     report.pruned, report.chunks_written, len(report.errors))))
    return table
