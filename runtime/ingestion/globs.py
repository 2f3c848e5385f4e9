"""Source include patterns, matched as .gitignore (and kustomize, and most tools) match paths.

`*` and `?` never cross a `/`: `guides/*.md` takes `guides/a.md`, not `guides/old/a.md`. `**`
spans folders: `guides/**/*.md` takes both, `**/*.md` every Markdown file at any depth. A
pattern without a `/` (`*.md`) matches a file's name at any depth; one with a `/` is anchored
at the source's folder (a leading `/` is allowed and means the same). `[abc]` and `[!abc]`
are character classes. fnmatch, used before, let `*` cross folders.
"""

from __future__ import annotations

import functools
import re


@functools.lru_cache(maxsize=256)
def compile_glob(pattern: str) -> re.Pattern[str]:
    anchored = "/" in pattern.rstrip("/")
    body = pattern.lstrip("/")
    out: list[str] = [] if anchored else ["(?:.*/)?"]
    i = 0
    while i < len(body):
        c = body[i]
        if body.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif body.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := body.find("]", i + 2)) != -1:
            inner = body[i + 1:end]
            inner = "^" + inner[1:] if inner.startswith("!") else inner
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def glob_match(path: str, pattern: str) -> bool:
    """Whether `path` (relative, `/`-separated) matches `pattern`."""
    return compile_glob(pattern).match(path) is not None
