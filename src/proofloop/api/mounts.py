"""What `proofloop serve` serves beside /v1: the web viewer under /ui and the reward server
(POST /v1/rewards, train/reward_server.py), wired to the same store, workers and tokens.

The viewer's verify form starts the same `bench-grade` run as POST /v1/verify, and its run
pages follow the API's progress events; the reward server judges with the served model.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse

from proofloop.api.auth import require_token, require_viewer, token_matches

VIEWER_PREFIX = "/ui"
VIEWER_ANALYSES = 4  # the verify form's analyses per proof (the API's default n)


def include_viewer(app: FastAPI, services: Any) -> None:
    from proofloop.api.routes import start_pairs
    from proofloop.api.schemas import Pair, VerifyRequest
    from proofloop.api.viewer import viewer_router

    def start_verify(problem: str, proof: str) -> str:
        body = VerifyRequest(pairs=[Pair(problem=problem, proof=proof)], n=VIEWER_ANALYSES, wait=False)
        return start_pairs(services, body, "verifier")

    settings = services.settings
    router = viewer_router(services.store, start_verify=start_verify,
                           check_token=(lambda token: token_matches(token, settings.tokens))
                           if settings.auth_required else None)
    app.include_router(router, prefix=VIEWER_PREFIX, dependencies=[Depends(require_viewer)])

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{VIEWER_PREFIX}/", status_code=307)


def include_rewards(app: FastAPI, services: Any) -> None:
    from proofloop.train.reward_server import judge_from_settings, reward_router

    settings = services.settings
    judge = judge_from_settings(settings.model_setup().settings, api_key=settings.api_key)
    app.include_router(reward_router(judge), dependencies=[Depends(require_token)])
