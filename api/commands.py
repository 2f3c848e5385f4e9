"""The command lines the in-cluster Jobs run, `aistack ingest`, `aistack eval` and `aistack
collection`: their flags and exit codes, written once.

The CLI declares its options with these flag names and ends with these codes; the operator
renders each Job's `args` with `IngestCommand`/`EvalCommand` and reads the codes in the Job's
podFailurePolicy and in `status.ingestion`/`status.evaluation`. A flag renamed here is renamed
for both, so a Job never runs a command line that the image's CLI refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

INGEST = "ingest"
EVAL = "eval"
COLLECTION = "collection"

STATE_FLAG = "--state"
QDRANT_URL_FLAG = "--qdrant-url"
BASE_FLAG = "--base"
TENANT_FLAG = "--tenant"
PRUNE_FLAG = "--prune"
MAX_FILE_SIZE_FLAG = "--max-file-size"
ENDPOINT_FLAG = "--endpoint"
TRACKING_URI_FLAG = "--tracking-uri"
API_KEY_ENV_FLAG = "--api-key-env"
MODEL_VERSION_FLAG = "--model-version"
COMPARE_STABLE_FLAG = "--compare-stable"
DEFAULT_API_KEY_ENV = "AISTACK_API_KEY"
"""Where `aistack eval` reads the gateway key when `--api-key-env` is not given."""


class IngestExit(IntEnum):
    """How `aistack ingest` ends."""

    INGESTED = 0
    """Every file was ingested or was unchanged: the Job completes."""
    SKIPPED = 1
    """Some files could not be read and were skipped; the others are written. The ingestion
    Job fails at once (a FailJob rule): a retry would read the same files. `status.ingestion`
    says documents were skipped."""
    UNAVAILABLE = 2
    """Nothing could be done (bad manifest or flags, store or embedder unavailable). The Job
    retries up to its backoffLimit: in a cluster this is mostly Qdrant still starting."""


class CollectionExit(IntEnum):
    """How `aistack collection` ends; the collection Job of an external Qdrant reports it."""

    READY = 0
    """The collection exists (created when missing) with the spec's vectors; missing payload
    indexes were added: the Job completes, `RetrievalReady`."""
    MISMATCH = 1
    """The collection holds other vectors (size, distance, named vectors): left untouched, the
    Job fails at once (a FailJob rule), `CollectionMismatch`."""
    UNAVAILABLE = 2
    """Qdrant is unreachable or refused the key: the Job retries up to its backoffLimit."""


class EvalExit(IntEnum):
    """How `aistack eval` ends; the promotion gate reads it through the evaluation Job."""

    PASSED = 0
    """The spec's evaluation.thresholds are met, or it defines none (nothing is gated): the Job
    completes, verdict Passed."""
    FAILED = 1
    """The thresholds are not met: the Job fails at once on its first FailJob rule, verdict
    Failed, and the config may not be promoted. With `--compare-stable`: the canary misses them,
    or scores worse than the stable version by more than `analysis.maxEvaluationRegression`; the
    canary's evaluation Job fails and the operator rolls the canary back."""
    UNAVAILABLE = 2
    """The evaluation could not run (bad manifest or dataset, no gateway, no MLflow): the Job
    fails at once (any code but 0 and 1), verdict Error: the config has no verdict."""


def _option(flag: str, value: str | None) -> list[str]:
    return [] if value is None else [flag, value]


@dataclass(frozen=True, kw_only=True)
class IngestCommand:
    """`aistack ingest MANIFEST [PATH...]` and its options; None or False leaves an option out
    (the CLI's default applies)."""

    manifest: str
    paths: tuple[str, ...] = ()
    qdrant_url: str | None = None
    state: str | None = None
    base: str | None = None
    tenant: str | None = None
    prune: bool = False
    max_file_size: str | None = None
    """A quantity (`64Mi`); None: the manifest's `retrieval.maxFileSize`, which the Job reads."""

    def args(self) -> list[str]:
        """The arguments after the program (`python -m aistack.cli`)."""
        return [INGEST, self.manifest, *self.paths, *_option(QDRANT_URL_FLAG, self.qdrant_url),
                *_option(STATE_FLAG, self.state), *_option(BASE_FLAG, self.base),
                *_option(TENANT_FLAG, self.tenant), *([PRUNE_FLAG] if self.prune else []),
                *_option(MAX_FILE_SIZE_FLAG, self.max_file_size)]


@dataclass(frozen=True, kw_only=True)
class CollectionCommand:
    """`aistack collection MANIFEST`: create or check the stack's collection on its Qdrant."""

    manifest: str

    def args(self) -> list[str]:
        """The arguments after the program (`python -m aistack.cli`)."""
        return [COLLECTION, self.manifest]


@dataclass(frozen=True, kw_only=True)
class EvalCommand:
    """`aistack eval MANIFEST [DATASET]` and its options; None leaves an option out (the CLI's
    default applies)."""

    manifest: str
    dataset: str | None = None
    endpoint: str | None = None
    state: str | None = None
    tracking_uri: str | None = None
    api_key_env: str | None = None
    model_version: str | None = None
    """`stable` or `canary`: only that version of a canary split answers."""
    compare_stable: bool = False
    """Ask the canary and the stable version the same questions and judge the canary against both
    the thresholds and the stable's scores (the canary's evaluation Job)."""

    def args(self) -> list[str]:
        """The arguments after the program (`python -m aistack.cli`)."""
        return [EVAL, self.manifest, *([] if self.dataset is None else [self.dataset]),
                *_option(ENDPOINT_FLAG, self.endpoint), *_option(STATE_FLAG, self.state),
                *_option(TRACKING_URI_FLAG, self.tracking_uri), *_option(API_KEY_ENV_FLAG, self.api_key_env),
                *_option(MODEL_VERSION_FLAG, self.model_version),
                *([COMPARE_STABLE_FLAG] if self.compare_stable else [])]
