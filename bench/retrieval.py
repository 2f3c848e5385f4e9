"""Retrieval benchmark: ingestion vs embedding throughput, search latency per engine, pipeline overhead.

    .venv/bin/python bench/retrieval.py [--sizes 10000 100000] [--queries 300] [--skip-client-100k]
                                        [--filtered-size 300000] [--only-filtered]

Everything is measured side by side in one run on this machine and printed as tables:
1. embeddings/s of the local MiniLM beside ingestion chunks/s (parse + chunk + embed + write);
2. search p50/p99 at each size x 384-d, with and without a tenant filter (10 tenants), for
   qdrant-edge (in-process, before and after its HNSW build, with recall@10 against exact
   search) and qdrant-client's local mode;
3. the RAG pipeline overhead per query excluding the model call: retriever search with a
   precomputed query vector (store search + budget fit + context formatting), and with the
   MiniLM query embedding included;
4. filtered recall: recall@10 and p50/p99 of a search filtered to one tenant of 10 at
   `--filtered-size` points (300k by default; the HNSW build takes minutes on 2 cores), for
   Qdrant's default beam (what the stores did before), a few beams, exact search, and the
   store's own search (`TENANT_SEARCH_EF`), each against exact search's top 10.
Vectors are clustered (centroids + noise, normalised) so HNSW sees a structure like real
embeddings rather than uniform noise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from aistack.api.v1alpha1.retrieval import Chunking  # noqa: E402
from aistack.runtime.ingestion.pipeline import Ingestor  # noqa: E402
from aistack.runtime.ingestion.sources import Target  # noqa: E402
from aistack.runtime.retrieval.context import format_context  # noqa: E402
from aistack.runtime.retrieval.contracts import Passage  # noqa: E402
from aistack.runtime.retrieval.edge import EdgeStore  # noqa: E402
from aistack.runtime.retrieval.embedders import LocalEmbedder  # noqa: E402
from aistack.runtime.retrieval.qdrant_server import QdrantClientStore  # noqa: E402
from aistack.runtime.retrieval.retriever import QdrantRetriever  # noqa: E402
from aistack.api.collection import TENANT_SEARCH_EF, CollectionSpec  # noqa: E402
from aistack.runtime.retrieval.edge import tenant_filter  # noqa: E402
from aistack.runtime.retrieval.store import StoredPoint, VectorStore  # noqa: E402

DIM = 384
TENANTS = [f"t{i}" for i in range(10)]
console = Console(width=150)


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * q / 100))]


def clustered(n: int, *, seed: int, centroids: int = 256) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(centroids, DIM)).astype(np.float32)
    points = centers[rng.integers(0, centroids, n)] + 0.6 * rng.normal(size=(n, DIM)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def sample_text(rng: random.Random, words: int) -> str:
    vocab = ("vector store tenant gateway model guardrail chunk embedding latency qdrant mlflow pipeline "
             "agent retrieval context budget citation operator cluster stage promote evaluation "
             "trace").split()
    return " ".join(rng.choice(vocab) for _ in range(words)) + "."


async def bench_ingestion(embedder: LocalEmbedder, rows: list[tuple[str, str, str]]) -> None:
    rng = random.Random(1)
    embedder.embed_sync([sample_text(rng, 140) for _ in range(64)])  # warm up
    folder = Path(tempfile.mkdtemp())
    docs = folder / "docs"
    docs.mkdir()
    for i in range(60):
        body = "\n\n".join(f"## Part {j}\n\n" + "\n\n".join(sample_text(rng, 60) for _ in range(3))
                           for j in range(4))
        (docs / f"doc{i}.md").write_text(f"# Document {i}\n\n{body}\n")
    store = EdgeStore(spec=CollectionSpec(name="bench", dimension=DIM), path=folder / "q")
    ingestor = Ingestor(store=store, embedder=embedder, chunking=Chunking(size=1000, overlap=150),
                        base=folder)
    report = await ingestor.ingest(ingestor.list([Target(uri=str(docs))]))
    again = await ingestor.ingest(ingestor.list([Target(uri=str(docs))]))
    await store.close()
    shutil.rmtree(folder)
    chunk_rate = report.chunks_written / report.seconds
    emb_rate = report.chunks_written / report.embed_seconds
    rows += [
        (f"embeddings/s (MiniLM, the same {report.chunks_written} chunk texts, batches of 64)",
         f"{emb_rate:.0f}", "1.00"),
        (f"ingestion chunks/s ({report.files} md files: read, parse, chunk, embed, write)",
         f"{chunk_rate:.0f}",
         f"{chunk_rate / emb_rate:.2f}"),
        (f"re-ingest unchanged ({again.unchanged} files, {again.chunks_written} writes)",
         f"{again.seconds * 1000:.0f} ms", ""),
    ]


async def fill(store: VectorStore, vectors: np.ndarray) -> float:
    await store.ensure_collection()
    t0 = time.perf_counter()
    batch = 2048
    for start in range(0, len(vectors), batch):
        await store.upsert([
            StoredPoint(str(uuid.UUID(int=i + 1)), vectors[i].tolist(),
                        {"text": f"chunk {i}", "source": f"doc{i // 8}.md", "chunk_index": i % 8,
                         "content_hash": "h", "tenant": TENANTS[i % len(TENANTS)]})
            for i in range(start, min(start + batch, len(vectors)))])
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def atimed(fn: Callable[[], Awaitable[object]], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def bench_search(size: int, queries: np.ndarray, rows: list[tuple[str, ...]], *,
                       client_too: bool) -> None:
    vectors = clustered(size, seed=size)
    spec = CollectionSpec(name="bench", dimension=DIM, tenant_field="tenant")
    folder = Path(tempfile.mkdtemp())
    edge = EdgeStore(spec=spec, path=folder)
    upsert_s = await fill(edge, vectors)
    qs = [q.tolist() for q in queries]

    def run(store: EdgeStore, tenant: str | None, n: int) -> list[float]:
        it = iter(qs * 10)
        with tenancy(store, tenant):
            return timed(lambda: store.search_sync(next(it), limit=10, tenant=tenant), n)

    n = len(qs)
    exact_ids = [[h.id for h in edge.search_sync(q, limit=10, tenant="t3")] for q in qs[:100]]
    assert all(len(ids) == 10 for ids in exact_ids)
    with tenancy(edge, None):
        assert len(edge.search_sync(qs[0], limit=10, tenant=None)) == 10
    plain, plain_t = run(edge, None, n), run(edge, "t3", n)
    t0 = time.perf_counter()
    await edge.optimize()
    build_s = time.perf_counter() - t0
    hnsw, hnsw_t = run(edge, None, n), run(edge, "t3", n)
    hnsw_ids = [[h.id for h in edge.search_sync(q, limit=10, tenant="t3")] for q in qs[:100]]
    recall = statistics.mean(len(set(a) & set(b)) / 10 for a, b in zip(exact_ids, hnsw_ids, strict=True))
    # the async path the gateway uses (thread hop included)
    it = iter(qs * 10)
    async_t = await atimed(lambda: edge.search(next(it), limit=10, tenant="t3"), n)
    await edge.close()
    shutil.rmtree(folder)
    rows += [
        (f"{size:,}", "qdrant-edge, unindexed (exact)", f"{upsert_s:.1f}", f"{pct(plain, 50):.2f}",
         f"{pct(plain, 99):.2f}",
         f"{pct(plain_t, 50):.2f}", f"{pct(plain_t, 99):.2f}", ""),
        (f"{size:,}", f"qdrant-edge, HNSW (build {build_s:.0f} s)", "", f"{pct(hnsw, 50):.2f}",
         f"{pct(hnsw, 99):.2f}",
         f"{pct(hnsw_t, 50):.2f}", f"{pct(hnsw_t, 99):.2f}", f"{recall:.3f}"),
        (f"{size:,}", "qdrant-edge, HNSW, async (thread hop)", "", "", "", f"{pct(async_t, 50):.2f}",
         f"{pct(async_t, 99):.2f}", ""),
    ]
    if client_too:
        local = QdrantClientStore(spec=spec)
        upsert_c = await fill(local, vectors)
        m = min(n, 30)  # brute force in Python: seconds per query at 100k
        it = iter(qs * 10)
        with tenancy(local, None):
            c_plain = await atimed(lambda: local.search(next(it), limit=10, tenant=None), m)
        c_ten = await atimed(lambda: local.search(next(it), limit=10, tenant="t3"), m)
        await local.close()
        rows.append((f"{size:,}", f"qdrant-client local ({m} queries)", f"{upsert_c:.1f}",
                     f"{pct(c_plain, 50):.2f}",
                     f"{pct(c_plain, 99):.2f}", f"{pct(c_ten, 50):.2f}", f"{pct(c_ten, 99):.2f}", ""))


@contextlib.contextmanager
def tenancy(store: VectorStore, tenant: str | None) -> Iterator[None]:
    """Without a tenant, search as a collection with no tenant field (no filter at all): in a
    multi-tenant collection a tenantless caller is filtered to shared chunks, which here are none."""
    spec = store.spec
    if tenant is None:
        store.spec = dataclasses.replace(spec, tenant_field=None)
    try:
        yield
    finally:
        store.spec = spec


class FixedEmbedder:
    """Returns a precomputed vector: isolates the pipeline from the embedding model."""

    model = "fixed"
    dimension = DIM

    def __init__(self, vector: list[float]) -> None:
        self.vector = vector

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.vector for _ in texts]


async def bench_pipeline(embedder: LocalEmbedder, rows: list[tuple[str, str, str]], n: int) -> None:
    folder = Path(tempfile.mkdtemp())
    spec = CollectionSpec(name="bench", dimension=DIM, tenant_field="tenant")
    store = EdgeStore(spec=spec, path=folder)
    rng = random.Random(2)
    texts = [sample_text(rng, 120) for _ in range(400)]
    vectors = np.asarray(await embedder.embed(texts), dtype=np.float32)
    await fill(store, np.concatenate([vectors] * 25))  # 10k chunks
    await store.optimize()
    question = "how does the gateway keep tenants apart in the vector store?"
    [qv] = await embedder.embed([question])
    fixed = QdrantRetriever(embedder=FixedEmbedder(qv), store=store, top_k=4, max_context_tokens=2000)
    real = QdrantRetriever(embedder=embedder, store=store, top_k=4, max_context_tokens=2000)

    async def pipeline(retriever: QdrantRetriever) -> None:
        passages: list[Passage] = await retriever.search(question, tenant="t3")
        format_context(passages)

    await atimed(lambda: pipeline(fixed), 20)
    no_model = await atimed(lambda: pipeline(fixed), n)
    with_embed = await atimed(lambda: pipeline(real), max(20, n // 3))
    embed_only = await atimed(lambda: embedder.embed([question]), max(20, n // 3))
    await store.close()
    shutil.rmtree(folder)
    rows += [
        ("retrieve + budget + context, 10k chunks (no models)", f"{pct(no_model, 50):.2f}",
         f"{pct(no_model, 99):.2f}"),
        ("query embedding alone (MiniLM, 1 sentence)", f"{pct(embed_only, 50):.2f}",
         f"{pct(embed_only, 99):.2f}"),
        ("retrieve + budget + context incl. query embedding", f"{pct(with_embed, 50):.2f}",
         f"{pct(with_embed, 99):.2f}"),
    ]


async def bench_filtered(size: int, queries: np.ndarray, rows: list[tuple[str, ...]]) -> None:
    """Recall@10 of tenant-filtered searches (tenant t3, a tenth of the points) against exact search."""
    import qdrant_edge as qe

    spec = CollectionSpec(name="bench", dimension=DIM, tenant_field="tenant")
    folder = Path(tempfile.mkdtemp())
    store = EdgeStore(spec=spec, path=folder)
    upsert_s = await fill(store, clustered(size, seed=size))
    t0 = time.perf_counter()
    await store.optimize()
    build_s = time.perf_counter() - t0
    shard = store._open()
    where = tenant_filter(spec, "t3")
    qs = [q.tolist() for q in queries]

    def raw(params: object) -> Callable[[list[float]], list[str]]:
        def search(vector: list[float]) -> list[str]:
            return [str(p.id) for p in shard.query(qe.QueryRequest(
                limit=10, query=qe.Query.Nearest(vector), filter=where, with_payload=False, with_vector=False,
                params=params))]
        return search

    def own(vector: list[float]) -> list[str]:
        return [h.id for h in store.search_sync(vector, limit=10, tenant="t3")]

    exact = [raw(qe.SearchParams(exact=True))(q) for q in qs]
    ways: list[tuple[str, Callable[[list[float]], list[str]]]] = [
        ("Qdrant's default beam (before)", raw(None)),
        *((f"hnsw_ef={ef}", raw(qe.SearchParams(hnsw_ef=ef))) for ef in (128, 256, 512)),
        ("exact search", raw(qe.SearchParams(exact=True))),
        (f"EdgeStore.search (hnsw_ef={TENANT_SEARCH_EF}, after)", own),
    ]
    for name, search in ways:
        for q in qs[:20]:
            search(q)  # warm
        found, times = [], []
        for q in qs:
            t = time.perf_counter()
            found.append(search(q))
            times.append((time.perf_counter() - t) * 1000)
        recall = statistics.mean(len(set(a) & set(b)) / 10 for a, b in zip(exact, found, strict=True))
        rows.append((f"{size:,}", name, f"{recall:.3f}", f"{pct(times, 50):.2f}", f"{pct(times, 99):.2f}"))
    note = f"(upsert {upsert_s:.0f} s, HNSW build {build_s:.0f} s, load {os.getloadavg()[0]:.1f})"
    rows.append((f"{size:,}", note, "", "", ""))
    await store.close()
    shutil.rmtree(folder)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--skip-client-100k", action="store_true",
                        help="qdrant-client local mode only at 10k")
    parser.add_argument("--filtered-size", type=int, default=300_000,
                        help="points for the filtered-recall table (0 skips it)")
    parser.add_argument("--only-filtered", action="store_true", help="only the filtered-recall table")
    args = parser.parse_args()
    console.print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    if args.filtered_size:
        filtered_rows: list[tuple[str, ...]] = []
        await bench_filtered(args.filtered_size, clustered(args.queries, seed=7), filtered_rows)
        table = Table(title="tenant-filtered search, top 10, 384-d cosine, 1 tenant of 10 (ms); "
                            "recall@10 against exact search")
        for col in ("points", "search", "recall@10", "p50", "p99"):
            table.add_column(col)
        for row in filtered_rows:
            table.add_row(*row)
        console.print(table)
    if args.only_filtered:
        return
    embedder = LocalEmbedder(model="all-MiniLM-L6-v2")

    ingest_rows: list[tuple[str, str, str]] = []
    await bench_ingestion(embedder, ingest_rows)
    table = Table(title="ingestion vs embedding throughput")
    for col in ("measure", "value", "ratio to embeddings/s"):
        table.add_column(col)
    for row in ingest_rows:
        table.add_row(*row)
    console.print(table)

    search_rows: list[tuple[str, ...]] = []
    queries = clustered(args.queries, seed=7)
    for size in args.sizes:
        await bench_search(size, queries, search_rows,
                           client_too=not (args.skip_client_100k and size > 20_000))
    table = Table(title="search latency, top 10, 384-d cosine (ms); tenant filter = 1 of 10 tenants")
    for col in ("points", "engine", "upsert s", "p50", "p99", "p50 tenant", "p99 tenant", "recall@10 tenant"):
        table.add_column(col)
    for row in search_rows:
        table.add_row(*row)
    console.print(table)

    pipe_rows: list[tuple[str, str, str]] = []
    await bench_pipeline(embedder, pipe_rows, args.queries)
    table = Table(title="RAG pipeline overhead per query, excluding the LLM call (ms)")
    for col in ("step", "p50", "p99"):
        table.add_column(col)
    for row in pipe_rows:
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
