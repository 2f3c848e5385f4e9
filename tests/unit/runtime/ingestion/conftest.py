from __future__ import annotations

import pytest

from aistack.testing.documents import make_pdf

@pytest.fixture
def pdf_bytes() -> bytes:
    return make_pdf(["Qdrant keeps the vectors.", "MLflow keeps the runs."], title="Stack guide")
