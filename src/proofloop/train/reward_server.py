"""The reward server: the paper's rewards over HTTP, for any RL framework (NeMo-RL, OpenRLHF, a
custom loop) that scores completions by calling a remote reward.

`POST /v1/rewards` scores one batch: a task (`verifier`, `meta-verifier` or `generator`) and
its items. Each item is a completion plus what its reward needs:

- verifier: `completion` (an analysis), `target` (the expert score of the proof, 0 / 0.5 / 1);
  with `with_meta: true` also `problem` and `proof`, and the meta-verifier rates the analysis;
- meta-verifier: `completion` (a rating of an analysis), `target` (the expert quality rating);
- generator: `problem` and `completion` (proof and self evaluation); the verifier (n
  analyses) and the meta-verifier judge it.

The answer has one result per item, in order: `total` (null when a judge failed: no reward,
never 0), `components` (the named factors of train/rewards.py) and `reason`; plus the batch's
`stats` (completions, rewarded, format failures, failed judgements, seconds). All items of a
batch are judged at once; the judge goes through the model layer (retries, a bounded call
cache, a concurrency cap per endpoint). Bad input is a 4xx with a message: 422 for a malformed
item (the item's index named), 413 for a batch or text over the server's limits, 503 for a
judged task on a server started without a judge. `GET /v1/rewards/stats` has the totals since
start.

`reward_router(judge)` returns a router that `proofloop serve` can mount; everything it keeps
lives in the router's closure. `create_app(judge)` mounts it alone
(`proofloop train serve-rewards`):

    >>> from fastapi.testclient import TestClient
    >>> client = TestClient(create_app(judge=None))
    >>> ok = ("Here is my evaluation of the solution: fine.\\n\\n"
    ...       "Based on my evaluation, the final overall score should be: \\\\boxed{1}")
    >>> body = client.post("/v1/rewards", json={"task": "verifier", "items": [
    ...     {"completion": ok, "target": 0.5}, {"completion": "garbled", "target": 1}]}).json()
    >>> [(r["total"], r["components"]) for r in body["results"]]
    [(0.5, {'format': 1.0, 'score': 0.5}), (0.0, {'format': 0.0})]
    >>> body["stats"]["format_failures"], client.post("/v1/rewards", json={"task": "generator", "items": [
    ...     {"problem": "p", "completion": ok}]}).status_code
    (1, 503)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any, Literal

from proofloop.errors import ModelError, ProofloopError
from proofloop.extras import require
from proofloop.models.base import Sampling, Timeouts
from proofloop.models.cache import CallRecord, FailureRecord
from proofloop.models.factory import ModelSettings, build_provider
from proofloop.models.wrapper import Model
from proofloop.train.judge import Judge
from proofloop.train.rewards import ALPHA, BETA, Reward, meta_verifier_reward, verifier_reward

require("fastapi", "serve", "the reward server")  # one clear line without the extra
from fastapi import APIRouter, FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator  # noqa: E402

log = logging.getLogger(__name__)

__all__ = ["RewardLimits", "RewardRequest", "RewardResponse", "reward_router", "create_app", "judge_from_settings",
           "BoundedCallCache"]

# Ceilings no server goes above (the request model enforces them); RewardLimits can lower them.
HARD_MAX_ITEMS = 8192
HARD_MAX_TEXT_CHARS = 2_000_000  # about 500K tokens: the paper's 128K-token proofs fit with room


@dataclass(frozen=True)
class RewardLimits:
    """What one batch may hold on this server (413 above)."""

    max_items: int = 1024  # a GRPO step of 64 prompts x 16 completions
    max_text_chars: int = 1_000_000  # per text field

    def __post_init__(self) -> None:
        if not 1 <= self.max_items <= HARD_MAX_ITEMS or not 1 <= self.max_text_chars <= HARD_MAX_TEXT_CHARS:
            raise ValueError(f"limits must be within 1..{HARD_MAX_ITEMS} items and 1..{HARD_MAX_TEXT_CHARS} chars")


class RewardItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no true for 1, no "1" for 1

    completion: str = Field(max_length=HARD_MAX_TEXT_CHARS, description="the model's output to score")
    problem: str | None = Field(None, max_length=HARD_MAX_TEXT_CHARS,
                                description="generator; verifier with_meta: the problem statement")
    proof: str | None = Field(None, max_length=HARD_MAX_TEXT_CHARS,
                              description="verifier with_meta: the proof the analysis judges")
    target: float | None = Field(None, description="verifier: expert score; meta-verifier: expert rating")

    @field_validator("target")
    @classmethod
    def target_is_a_score(cls, value: float | None) -> float | None:
        if value is not None and value not in (0.0, 0.5, 1.0):
            raise ValueError(f"target must be 0, 0.5 or 1, got {value}")
        return value


NEEDS: dict[tuple[str, bool], tuple[str, ...]] = {  # (task, with_meta) -> fields each item must have
    ("verifier", False): ("target",), ("verifier", True): ("target", "problem", "proof"),
    ("meta-verifier", False): ("target",), ("generator", False): ("problem",),
}


class RewardRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # no true for 1, no "1" for 1

    task: Literal["verifier", "meta-verifier", "generator"]
    items: list[RewardItem] = Field(min_length=1, max_length=HARD_MAX_ITEMS)
    with_meta: bool = Field(False, description="verifier: multiply by the meta-verifier's rating of each analysis")
    alpha: float = Field(ALPHA, ge=0.0, allow_inf_nan=False, description="generator: weight of the proof's score")
    beta: float = Field(BETA, ge=0.0, allow_inf_nan=False, description="generator: weight of the self evaluation's reward")

    @model_validator(mode="after")
    def items_have_what_the_task_needs(self) -> "RewardRequest":
        key = (self.task, self.with_meta)
        if key not in NEEDS:
            raise ValueError(f"with_meta applies to the verifier task only, not {self.task}")
        for index, item in enumerate(self.items):
            missing = [name for name in NEEDS[key] if getattr(item, name) is None]
            if missing:
                raise ValueError(f"item {index}: the {self.task} task needs {', '.join(missing)}")
        return self


class ItemResult(BaseModel):
    total: float | None = Field(description="the reward; null: a judge failed, no reward (not 0)")
    components: dict[str, float]
    reason: str | None = None


class BatchStats(BaseModel):
    completions: int = 0
    rewarded: int = 0  # total not null
    format_failures: int = 0  # total 0.0 by the format: no judge call
    failed_judgements: int = 0  # total null
    seconds: float = 0.0


class RewardResponse(BaseModel):
    task: str
    results: list[ItemResult]
    stats: BatchStats


class ErrorDetail(BaseModel):
    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorDetail, "description": "the body is not JSON"},
    413: {"model": ErrorDetail, "description": "more items or longer texts than this server's limits"},
    503: {"model": ErrorDetail, "description": "a judged task on a server started without a judge"},
}


class BoundedCallCache:
    """The model layer's call cache (models/cache.py CallCache), holding at most `max_records`
    samples (least recently used go first) and the last `max_failures` failed attempts, so a
    server that runs for days does not grow without end."""

    def __init__(self, max_records: int = 100_000, max_failures: int = 1_000) -> None:
        self.max_records = max_records
        self.records: OrderedDict[str, CallRecord] = OrderedDict()
        self.failures: deque[FailureRecord] = deque(maxlen=max_failures)
        self.lock = threading.Lock()

    def get(self, key: str) -> CallRecord | None:
        with self.lock:
            record = self.records.get(key)
            if record is not None:
                self.records.move_to_end(key)
            return record

    def put_many(self, records: list[CallRecord]) -> None:
        with self.lock:
            for r in records:
                self.records[r.key] = r
                self.records.move_to_end(r.key)
            while len(self.records) > self.max_records:
                self.records.popitem(last=False)

    def record_failure(self, keys: list[str], *, namespace: str, model: str, tag: str, attempt: int,
                       error: ModelError, latency_s: float) -> None:
        with self.lock:
            self.failures.append(FailureRecord(
                keys=list(keys), namespace=namespace, model=model, tag=tag, attempt=attempt, kind=error.kind,
                message=error.message, status=error.status, retryable=error.retryable, latency_s=latency_s))

    def __len__(self) -> int:
        return len(self.records)


def judge_from_settings(settings: ModelSettings, *, api_key: str | None = None, n: int = 4,
                        max_concurrency: int = 512, max_tokens: int = 65536, temperature: float = 1.0,
                        top_p: float = 0.95, seed: int | None = None, cache_records: int = 100_000,
                        response_timeout_s: float = 7200.0) -> Judge:
    """A judge on the server `settings` describe.

    The concurrency cap is high by default: a GRPO step sends one verification and one
    meta-verification request per completion, all at once, and the step waits for the slowest
    (8 in flight would make a 64-completion step 16 calls long instead of one). With
    `settings.stream` False (what `serve-rewards` uses unless --judge-stream), each answer
    comes whole: a streamed answer costs this process about 0.1 ms of CPU per chunk, one token
    on vLLM or SGLang, which for a step of long analyses adds up to minutes of CPU (see
    bench/train/RESULTS.md); a whole answer then has `response_timeout_s` to arrive."""
    settings, key = settings.resolved(api_key)
    timeouts = Timeouts() if settings.stream else Timeouts(idle_read_s=response_timeout_s)
    model = Model(build_provider(settings, key, timeouts=timeouts), namespace="rewards", timeouts=timeouts,
                  max_concurrency=max_concurrency, cache=BoundedCallCache(cache_records), endpoint=settings.endpoint)
    return Judge(model, n=n, sampling=Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed))


def check_limits(request: RewardRequest, limits: RewardLimits) -> None:
    """413 when the batch is over this server's limits."""
    if len(request.items) > limits.max_items:
        raise HTTPException(413, f"batch of {len(request.items)} items is over this server's limit of "
                                 f"{limits.max_items}: send smaller batches")
    for index, item in enumerate(request.items):
        for name in ("completion", "problem", "proof"):
            size = len(getattr(item, name) or "")
            if size > limits.max_text_chars:
                raise HTTPException(413, f"item {index}: {name} of {size} characters is over this server's limit "
                                         f"of {limits.max_text_chars}")


async def score_item(judge: Judge | None, request: RewardRequest, item: RewardItem) -> Reward:
    """One item's reward; a judge that raised (an unreachable or refusing server) is no reward."""
    try:
        if request.task == "meta-verifier":
            return meta_verifier_reward(item.completion, item.target)  # type: ignore[arg-type]
        if request.task == "verifier" and not request.with_meta:
            return verifier_reward(item.completion, item.target)  # type: ignore[arg-type]
        assert judge is not None  # the handler answered 503 before
        if request.task == "verifier":
            return await judge.verifier_reward(item.problem or "", item.proof or "", item.completion,
                                               item.target, with_meta=True)  # type: ignore[arg-type]
        return await judge.generator_reward(item.problem or "", item.completion, alpha=request.alpha,
                                            beta=request.beta)
    except ProofloopError as e:  # fatal model errors (auth, unreachable) raise out of the model layer
        return Reward(None, {}, f"judge error: {e}")


def batch_stats(rewards: list[Reward], seconds: float) -> BatchStats:
    return BatchStats(completions=len(rewards), rewarded=sum(r.total is not None for r in rewards),
                      format_failures=sum(r.components.get("format") == 0.0 for r in rewards),
                      failed_judgements=sum(r.total is None for r in rewards), seconds=round(seconds, 6))


def reward_router(judge: Judge | None, *, limits: RewardLimits = RewardLimits()) -> APIRouter:
    """The reward endpoints; `judge` None serves the rewards that need no judge only."""
    router = APIRouter(tags=["rewards"])
    totals = {"batches": 0, **BatchStats().model_dump(exclude={"seconds"})}

    @router.post("/v1/rewards", response_model=RewardResponse, responses=ERRORS)
    async def score(request: RewardRequest) -> RewardResponse:
        """Score a batch of completions with the paper's rewards (module docstring)."""
        check_limits(request, limits)
        if judge is None and (request.task == "generator" or request.with_meta):
            raise HTTPException(503, f"this reward server has no judge model, which the {request.task} task"
                                     f"{' with_meta' if request.with_meta else ''} needs: start it with "
                                     "--judge-base-url and --judge-model")
        t0 = time.perf_counter()
        rewards = list(await asyncio.gather(*(score_item(judge, request, item) for item in request.items)))
        stats = batch_stats(rewards, time.perf_counter() - t0)
        if stats.failed_judgements:
            causes = sorted({r.reason or "" for r in rewards if r.total is None})
            log.warning("%d of %d %s completions got no reward (a judge failed): %s", stats.failed_judgements,
                        stats.completions, request.task, "; ".join(causes)[:500])
        totals["batches"] += 1
        for name, value in stats.model_dump(exclude={"seconds"}).items():
            totals[name] += value
        return RewardResponse(task=request.task, stats=stats, results=[
            ItemResult(total=r.total, components=r.components, reason=r.reason) for r in rewards])

    @router.get("/v1/rewards/stats")
    async def stats() -> dict[str, Any]:
        """Totals since the server started, and the judge model's calls and tokens."""
        judge_info = None
        if judge is not None:
            judge_info = {"model": judge.model.model, "n": judge.n, "stats": asdict(judge.stats),
                          "calls": judge.model.accounting.total.as_dict()}
        return {**totals, "judge": judge_info, "limits": asdict(limits)}

    return router


def create_app(judge: Judge | None, *, limits: RewardLimits = RewardLimits()) -> FastAPI:
    """The reward router alone in an app (`proofloop train serve-rewards`)."""
    app = FastAPI(title="proofloop rewards", description="The DeepSeekMath-V2 rewards as a remote reward service.")
    app.include_router(reward_router(judge, limits=limits))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
