"""`POST /aistack/retrieve`, local only: the passages a question retrieves.

`aistack up` adds it to an open gateway (no API keys) so `aistack eval` can score groundedness
against the passages the stack really retrieves. Its body is validated like every other: a bad
one is a 400 in the OpenAI error shape, never a 500 that also drops the keep-alive connection.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from aistack.runtime.gateway.errors import GatewayError
from aistack.runtime.gateway.jsonio import json_response
from aistack.runtime.gateway.schemas import _Strict, parse_body
from aistack.runtime.retrieval.contracts import Retriever

PATH = "/aistack/retrieve"


class RetrieveRequest(_Strict):
    query: Annotated[str, Field(min_length=1, max_length=20_000)]


def add_local_retrieve(app: FastAPI, *, retriever: Retriever, tenant_header: str) -> None:
    """Serve `PATH` on `app` from `retriever`; the tenant comes from `tenant_header`."""

    async def retrieve(request: Request) -> Response:
        req = parse_body(RetrieveRequest, await request.body())
        try:
            passages = await retriever.search(req.query, tenant=request.headers.get(tenant_header) or None)
        except Exception as err:
            raise GatewayError(503, f"retrieval failed ({type(err).__name__}); retry later",
                               code="retrieval_unavailable") from err
        return json_response({"passages": [{"text": p.text, "source": p.source, "title": p.title,
                                            "score": p.score} for p in passages]})

    app.add_route(PATH, retrieve, methods=["POST"], include_in_schema=False)
