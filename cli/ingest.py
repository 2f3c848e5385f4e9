"""`aistack ingest STACK.yaml [PATH...]`: load documents into the stack's collection."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn,
                           TimeElapsedColumn)
from rich.table import Table

from aistack.api.commands import (BASE_FLAG, MAX_FILE_SIZE_FLAG, PRUNE_FLAG, QDRANT_URL_FLAG, STATE_FLAG,
                                  TENANT_FLAG, IngestExit)
from aistack.cli.progress import Stages

if TYPE_CHECKING:
    from aistack.runtime.ingestion.ingest import OnFile
    from aistack.runtime.ingestion.pipeline import IngestReport

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def ingest_cmd(
    manifest: Annotated[Path, typer.Argument(help="The AIStack manifest.", show_default=False)],
    paths: Annotated[list[str] | None, typer.Argument(
        metavar="PATH", help="Files, folders or s3://bucket/prefix URIs; the manifest's retrieval.sources "
                             "when omitted.",
        show_default=False)] = None,
    prune: Annotated[bool, typer.Option(
        PRUNE_FLAG, help="Delete stored documents that the given paths no longer hold.")] = False,
    tenant: Annotated[str | None, typer.Option(
        TENANT_FLAG, metavar="NAME",
        help="Tenant stamped on every chunk (needs retrieval.tenantField).")] = None,
    state: Annotated[Path | None, typer.Option(
        STATE_FLAG, metavar="DIR", help="State folder (default: <manifest folder>/.aistack/<name>).")] = None,
    qdrant_url: Annotated[str | None, typer.Option(
        QDRANT_URL_FLAG, metavar="URL", help="A Qdrant server instead of the embedded store.")] = None,
    base: Annotated[Path | None, typer.Option(
        BASE_FLAG, metavar="DIR",
        help="Folder the sources' relative paths start from (default: the manifest's folder).")] = None,
    max_file_size: Annotated[str | None, typer.Option(
        MAX_FILE_SIZE_FLAG, metavar="SIZE",
        help="Skip files bigger than this, e.g. 64Mi (default: the manifest's "
             "retrieval.maxFileSize).")] = None,
) -> None:
    """Ingest documents into the stack's collection.

    Reads .md/.txt/.html/.pdf files, local or on S3. Re-running is cheap: unchanged files
    write nothing, changed files replace their chunks, and --prune removes documents deleted
    from the given paths. Unreadable files, links out of their source folder and files over the
    size cap are reported and skipped. Exit code 0: all files
    ingested; 1: some were skipped with errors; 2: nothing could be done (bad manifest, store
    or embedder unavailable).
    """
    from aistack.runtime.ingestion.ingest import IngestionUnavailable
    from aistack.runtime.local.commands import IngestionRequest, run_ingestion

    request = IngestionRequest(manifest=manifest, paths=tuple(paths or ()), prune=prune, tenant=tenant,
                               state=state, qdrant_url=qdrant_url, base=base, max_file_size=max_file_size)
    try:
        with Stages(err) as stages:
            result = run_ingestion(request, progress=_Shown(stages))
    except IngestionUnavailable as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(IngestExit.UNAVAILABLE) from None
    report = result.report
    out.print(summary(report, collection=result.collection))
    for source, note in report.warnings:
        err.print(f"[yellow]note[/yellow] {escape(source)}: {escape(note)}")
    for source, reason in report.errors:
        err.print(f"[red]skipped[/red] {source}: {reason}")
    if report.errors:
        raise typer.Exit(IngestExit.SKIPPED)


class _Shown:
    """The ingestion's stages as `Stages` lines; its files as a bar on a terminal, elsewhere as
    one more stage line (the summary says the rest)."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.bar = _FileProgress(stages.console)

    def begin(self, text: str) -> None:
        self.stages.begin(text)

    def working(self, source: str, text: str) -> None:
        """On a terminal, in the bar; elsewhere (a Job's log) a line, a few per large file."""
        if self.stages.interactive:
            self.bar.note(f"{source}: {text}")
        else:
            self.stages.console.print(f"{source}: {text}", markup=False)

    @contextlib.contextmanager
    def files(self, total: int) -> Iterator[OnFile]:
        if self.stages.interactive:
            self.stages.end()
            with self.bar.showing(total):
                yield self.bar.advance
        else:
            self.stages.begin(f"ingesting {total} file(s)")
            yield self.bar.advance  # no bar: a no-op


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
                                  TimeElapsedColumn(), TextColumn("{task.fields[last]}"),
                                  console=self.console,
                                  transient=True)
        self._task = self._progress.add_task("ingesting", total=total, last="")
        with self._progress:
            yield
        self._progress = None

    def advance(self, source: str, status: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1 if status != "pruned" else 0,
                                  last=f"{status}: {source}")

    def note(self, text: str) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, last=text)


def summary(report: IngestReport, *, collection: str) -> Table:
    table = Table(title=f"ingested into {collection!r} in {report.seconds:.1f} s")
    for column in ("files", "new", "changed", "unchanged", "empty", "pruned", "chunks written",
                   "skipped (errors)"):
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in (report.files, report.new, report.changed, report.unchanged, report.empty,
                                     report.pruned, report.chunks_written, len(report.errors))))
    return table
