"""The evaluation dataset: JSONL, one question per line, checked line by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class DatasetError(ValueError):
    """A dataset that cannot be evaluated; the message names the line and the field."""


class Question(BaseModel):
    """One line: `{"question", "reference"?, "sources"?, "refuse"?}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    question: Annotated[str, Field(min_length=1)]
    reference: str | None = None
    """The answer a good stack gives (for token F1 and similarity)."""
    sources: list[str] = Field(default_factory=list)
    """Sources that should be retrieved (for hit rate and MRR), e.g. `ingestion.md`."""
    refuse: bool = False
    """The guardrails must refuse this question."""


def load_dataset(path: Path) -> list[Question]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    questions: list[Question] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            questions.append(Question.model_validate(json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not JSON ({exc.msg})")
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(str(p) for p in error["loc"]) or "<line>"
                problems.append(f"{path}:{number}: {where}: {error['msg']}")
    if problems:
        raise DatasetError("\n".join(problems))
    if not questions:
        raise DatasetError(f"{path}: no questions (one JSON object per line expected)")
    return questions
