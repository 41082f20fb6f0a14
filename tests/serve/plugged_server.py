"""A model server with one extra router plugged in, the way the feedback route plugs in (run by test_seams.py).

``python tests/serve/plugged_server.py MODEL_DIR PORT``: serves MODEL_DIR on 127.0.0.1:PORT with
``GET /test/responses/{request_id}``, which answers from the server's response log.
"""

from __future__ import annotations

import sys

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from medgo.config import ServeConfig
from medgo.logs import setup_logging
from medgo.serve.response_log import InMemoryResponseLog
from medgo.serve.server import ServerContext, run


def response_lookup_router(context: ServerContext) -> APIRouter:
    router = APIRouter(prefix="/test")

    @router.get("/responses/{request_id}")
    async def response(request_id: str):
        entry = context.response_log.get(request_id)
        if entry is None:
            return JSONResponse(status_code=404, content={"error": "unknown response"})
        return {
            "model": entry.model,
            "messages": entry.messages,
            "answer": entry.answer,
            "created": entry.created,
        }

    return router


if __name__ == "__main__":
    setup_logging()
    model_dir, port = sys.argv[1], int(sys.argv[2])
    config = ServeConfig(model_uri=model_dir, http_port=port, max_new_tokens=16, torch_threads=1)
    run(
        config,
        enable_grpc=False,
        response_log=InMemoryResponseLog(retention_s=3600),
        routers=[response_lookup_router],
    )
