"""The model cache's pull: its command line, exit codes and folder layout, written once.

`aistack engine pull` (the CLI) is declared with these flags and ends with these codes; the
operator renders the pull Job's (or init container's) `args` with `PullCommand`, reads the codes
in the Job's podFailurePolicy and in the `ModelReady` condition, and points vLLM at
`cached_model_dir`. A flag renamed here is renamed for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

PULL = ("engine", "pull")
SOURCE_FLAG = "--source"
DEST_FLAG = "--dest"
TOKEN_ENV_FLAG = "--token-env"
CACHE_PATH = "/model-cache"
"""Where the model's pods and the pull Job mount the cache volume."""
MARKER = ".aistack-pull.json"
"""Written last into a pulled folder: what was pulled from where; a pull that finds it current
moves no bytes."""


class PullExit(IntEnum):
    """How `aistack engine pull` ends."""

    CACHED = 0
    """Every file of the model is in the folder (pulled now, or already there)."""
    UNREACHABLE = 1
    """The source could not be read right now (network, throttling, a server error): the Job
    retries up to its backoffLimit."""
    TOO_SMALL = 3
    """The files do not fit in the volume's free space: the Job fails at once (a retry would not
    fit either); `ModelReady` says DownloadFailed with the sizes."""
    NOT_FOUND = 4
    """No such model or mirror prefix, or no access to it: the Job fails at once."""


def cached_model_dir(model: str, root: str = CACHE_PATH) -> str:
    """The folder the weights of `model` (a hub repo id such as `Qwen/Qwen2.5-7B-Instruct`) are
    pulled into and vLLM loads from: `<root>/models/Qwen--Qwen2.5-7B-Instruct`."""
    return f"{root}/models/{re.sub(r'[^A-Za-z0-9._-]', '-', model.replace('/', '--'))}"


@dataclass(frozen=True, kw_only=True)
class PullCommand:
    """`aistack engine pull MODEL --dest DIR [--source SRC] [--token-env VAR]`."""

    model: str
    dest: str
    source: str = "hub"
    token_env: str | None = None

    def args(self) -> list[str]:
        """The arguments after the program (`python -m aistack.cli`)."""
        return [*PULL, self.model, SOURCE_FLAG, self.source, DEST_FLAG, self.dest,
                *([] if self.token_env is None else [TOKEN_ENV_FLAG, self.token_env])]
