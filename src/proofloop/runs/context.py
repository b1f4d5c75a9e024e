"""What every run kind shares: the model set-up stored in the run's config, the recorder that
writes records to the store, and the context a kind's `execute` receives.

`ModelSetup` is the one bundle of model options (provider, server, model, max-n,
concurrency, timeouts, templates, sampling per role). The CLI builds it from its options,
`config()` turns it into the part of a run's config every kind stores, and `from_config`
reads it back on resume; the API key is never stored.

    >>> from proofloop.models.factory import ModelSettings
    >>> setup = ModelSetup(ModelSettings(provider="sim")).resolved()
    >>> setup.sampling["gen"].max_tokens, setup.sampling["verify"].max_tokens   # the paper's limits
    (131072, 65536)
    >>> ModelSetup.from_config(setup.config()).settings.provider
    'sim'
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from proofloop.errors import UserInputError
from proofloop.models.base import RetryPolicy, Sampling, Timeouts
from proofloop.models.factory import ModelSettings, build_provider
from proofloop.models.replicas import ReplicaSet
from proofloop.models.wrapper import Model
from proofloop.packs import DEFAULT_PACK, get_pack
from proofloop.protocol import Templates
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProofRecord
from proofloop.runs.evidence import evidence_view
from proofloop.search.base import SearchContext
from proofloop.search.budget import Budget
from proofloop.store import Store

ROLES = ("gen", "verify", "meta")
# Token limits per role when none is given: the paper's 128K generation / 64K verification
# for servers (and the simulator, which stands in for one); small ones for the embedded
# offline model, which writes about 14 tokens/s on a CPU.
PAPER_MAX_TOKENS = {"gen": 131072, "verify": 65536, "meta": 65536}
EMBEDDED_MAX_TOKENS = {"gen": 512, "verify": 512, "meta": 512}


@dataclass
class ModelSetup:
    """The model options of a run. `max_tokens` / `verify_max_tokens` None: the defaults above."""

    settings: ModelSettings
    temperature: float = 1.0  # the paper's sampling
    top_p: float = 0.95
    max_tokens: int | None = None
    verify_max_tokens: int | None = None
    seed: int | None = None
    templates: Templates | None = None
    max_concurrency: int = 8
    max_sequences: int | None = None  # samples in flight per server (Model's max_sequences); None: no cap
    timeouts: Timeouts = field(default_factory=Timeouts)
    api_key: str | None = None  # used, never stored
    pack: str = "math"  # the domain pack (packs/): its templates are in `templates`, its evidence used by kinds
    sampling: dict[str, Sampling] = field(default_factory=dict)  # filled by resolved()

    def __post_init__(self) -> None:
        for name in ("max_tokens", "verify_max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
        if self.max_concurrency < 1:
            raise UserInputError(f"--max-concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_sequences is not None and self.max_sequences < 1:
            raise UserInputError(f"--max-sequences must be at least 1, got {self.max_sequences}")
        if not 0.0 <= self.temperature <= 2.0:
            raise UserInputError(f"--temperature must be within [0, 2], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise UserInputError(f"--top-p must be within (0, 1], got {self.top_p}")
        get_pack(self.pack)  # an unknown or broken pack fails before a run exists

    def resolved(self) -> "ModelSetup":
        """Provider, server and model filled in from flags / environment / .env, and the
        sampling per role with the defaults for that provider."""
        settings, key = self.settings.resolved(self.api_key)
        if settings.base_url:  # a URL that cannot work fails before a run exists
            from proofloop.models.openai_provider import check_base_urls

            settings = replace(settings, base_url=check_base_urls(settings.base_url))
        defaults = EMBEDDED_MAX_TOKENS if settings.provider == "local" and not settings.model else PAPER_MAX_TOKENS
        limits = {"gen": self.max_tokens or defaults["gen"],
                  "verify": self.verify_max_tokens or defaults["verify"],
                  "meta": self.verify_max_tokens or defaults["meta"]}
        # A seed makes the server's sampling reproducible (each request gets seed + its first
        # sample index), which also makes n single-sample requests differ.
        sampling = {role: Sampling(temperature=self.temperature, top_p=self.top_p, max_tokens=limits[role],
                                   seed=self.seed) for role in ROLES}
        return replace(self, settings=settings, api_key=key, sampling=sampling)

    def config(self) -> dict[str, Any]:
        """The part of a run's config that rebuilds the same model on resume (no API key)."""
        return {"model": dataclasses.asdict(self.settings),
                "sampling": {role: dataclasses.asdict(s) for role, s in self.sampling.items()},
                "templates": dataclasses.asdict(self.templates) if self.templates else None,
                "max_concurrency": self.max_concurrency,
                **({"max_sequences": self.max_sequences} if self.max_sequences is not None else {}),
                "timeouts": dataclasses.asdict(self.timeouts),
                # the default pack is left out, so a math run's config is what it was before packs
                **({"pack": self.pack} if self.pack != DEFAULT_PACK else {})}

    @classmethod
    def from_config(cls, config: dict[str, Any], api_key: str | None = None) -> "ModelSetup":
        sampling = {role: Sampling(**s) for role, s in (config.get("sampling") or {}).items()}
        return cls(settings=ModelSettings(**config["model"]),
                   templates=Templates(**config["templates"]) if config.get("templates") else None,
                   max_concurrency=config.get("max_concurrency", 8), max_sequences=config.get("max_sequences"),
                   timeouts=Timeouts(**config["timeouts"]) if config.get("timeouts") else Timeouts(),
                   api_key=api_key, sampling=sampling, pack=config.get("pack", DEFAULT_PACK))

    def describe(self) -> str:
        """One line of the effective settings, printed once when a run starts."""
        s, gen, ver = self.settings, self.sampling.get("gen"), self.sampling.get("verify")
        where = s.base_url or ("embedded SmolLM2-135M" if s.provider == "local" and not s.model else s.provider)
        if len(s.base_urls) > 1:
            where = f"{len(s.base_urls)} replicas ({', '.join(s.base_urls)})"
        parts = [f"provider {s.provider}", f"model {s.model or 'default'}", f"at {where}"]
        if gen and ver:
            parts += [f"temperature {gen.temperature:g}", f"top_p {gen.top_p:g}",
                      f"max tokens {gen.max_tokens} (proofs) / {ver.max_tokens} (checks)",
                      f"seed {gen.seed if gen.seed is not None else 'none'}"]
        parts += [f"max-n {s.max_n or 'server'}", f"concurrency {self.max_concurrency}"]
        if self.max_sequences is not None:
            parts.append(f"sequences {self.max_sequences}")
        return "settings: " + ", ".join(parts)

    def model(self, store: Store, namespace: str, notice: Callable[[str], None]) -> Model:
        """The wrapped model whose calls are cached in `store` under `namespace` (the run id)."""
        provider = build_provider(self.settings, self.api_key, timeouts=self.timeouts, notice=notice)
        # Several replicas: the caps are per replica, the wrapper caps their total.
        replicas = len(provider.replicas) if isinstance(provider, ReplicaSet) else 1
        total = provider.cap_each(self.max_concurrency) if isinstance(provider, ReplicaSet) else self.max_concurrency
        return Model(provider, namespace=namespace, cache=store, timeouts=self.timeouts, retry=RetryPolicy(),
                     max_concurrency=total, endpoint=self.settings.endpoint,
                     max_sequences=None if self.max_sequences is None else self.max_sequences * replicas)


DERIVED = {"derived": True}  # a record an execution derives (not an input stored at creation)


class StoreRecorder:
    """Writes the records a strategy hands over to the run store, in batches: the records
    handed over in one stretch of the event loop (the n analyses of one request, the ratings
    that follow, ...) go in ONE transaction, written just after that stretch yields (or at
    once, outside an event loop). Every call they come from is committed already (the model
    wrapper's put_many), so a crash before a batch is written loses no call: a resume re-derives
    the records from the stored calls. A read through the same Store writes what is pending
    first, so this process never reads a record older than the store. A failed call has no
    text: it is stored with raw "" and its status and cause."""

    MAX_PENDING = 512  # records held at most before they are written, event loop or not

    def __init__(self, store: Store, run_id: str,
                 on_record: Callable[[str, ProofRecord | AnalysisRecord | MetaRecord], None] | None = None):
        self.store, self.run_id = store, run_id
        self.on_record = on_record or (lambda kind, record: None)
        self.problem_ids: dict[str, int] = {}
        # What this execution derived: after it finishes, derived records outside these sets
        # are orphans of an earlier execution's decisions (runs/execute.py prunes them).
        self.recorded: dict[str, set[str]] = {"proof": set(), "analysis": set(), "meta": set()}
        # proof id -> meta to keep when the proof is recorded again (runs/evidence.py: its evidence)
        self.kept_meta: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {"proofs": [], "verifications": [], "metas": []}
        self.events: list[tuple[str, Any]] = []  # on_record calls owed once the batch is written
        self.scheduled = False
        self.failed: BaseException | None = None  # a batch written from the loop that failed
        self.lock = threading.RLock()  # the store may be read (and so flushed) from another thread
        store.before_read(self.flush)

    def problem_id(self, problem: str, **meta: Any) -> int:
        if problem not in self.problem_ids:
            self.problem_ids[problem] = self.store.add_problem(self.run_id, problem, meta=meta or None)
        return self.problem_ids[problem]

    def proof(self, problem: str, record: ProofRecord, *, given: bool = False, **where: Any) -> None:
        self._hold("proofs", dict(
            id=record.id, problem_id=self.problem_id(problem), raw=record.raw or "",
            reasoning=record.reasoning, solution=record.solution, self_evaluation=record.self_evaluation,
            self_score=record.self_score, status=record.status.value, cause=record.cause,
            finish_reason=record.finish_reason, round=where.get("round"), thread=where.get("thread"),
            attempt=where.get("attempt"), parents=record.parents, refined_from_analyses=record.analyses_used,
            meta={**DERIVED, **self.kept_meta.get(record.id, {})}),
            None if given else ("proof", record))  # a proof the user supplied is no progress
        self.recorded["proof"].add(record.id)

    def analysis(self, problem: str, record: AnalysisRecord, *, given: bool = False) -> None:
        self._hold("verifications", dict(
            id=record.id, proof_id=record.proof_id, raw=record.raw or "", reasoning=record.reasoning,
            analysis=record.analysis, score=record.score, status=record.status.value, cause=record.cause,
            issues=record.issues, meta=DERIVED), None if given else ("analysis", record))
        self.recorded["analysis"].add(record.id)

    def meta(self, problem: str, record: MetaRecord) -> None:
        self._hold("metas", dict(
            id=record.id, verification_id=record.analysis_id, raw=record.raw or "", reasoning=record.reasoning,
            analysis=record.analysis, rating=record.rating, status=record.status.value, cause=record.cause,
            meta=DERIVED), ("meta", record))
        self.recorded["meta"].add(record.id)

    def _hold(self, table: str, values: dict[str, Any], event: tuple[str, Any] | None) -> None:
        with self.lock:
            self._raise_failure()
            self.pending[table].append(values)
            if event:
                self.events.append(event)
            held = sum(map(len, self.pending.values()))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or held >= self.MAX_PENDING:
            self.flush()
        elif not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush_from_loop)

    def _flush_from_loop(self) -> None:
        try:
            self.flush()
        except BaseException as e:  # raised to the strategy at its next record (or the final flush)
            self.failed = e

    def _raise_failure(self) -> None:
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise failed

    def flush(self) -> None:
        """Write every record handed over and not yet written, in one transaction; then tell
        on_record about them. Raises what a batch written from the event loop raised."""
        with self.lock:
            self.scheduled = False
            self._raise_failure()
            batch, events = self.pending, self.events
            if not any(batch.values()):
                return
            self.pending, self.events = {"proofs": [], "verifications": [], "metas": []}, []
            self.store.add_records(self.run_id, **batch)
        for kind, record in events:
            self.on_record(kind, record)

    def analysis_texts(self, proof_id: str, ids: list[str]) -> dict[str, str]:
        """Recorded analysis texts of one proof (search.base.AnalysisTexts): the search reads
        them back for a refinement prompt instead of holding every analysis in memory."""
        wanted = set(ids)
        texts = {v.id: v.analysis or v.raw for v in self.store.verifications(self.run_id, proof_id=proof_id)
                 if v.id in wanted}
        return {i: t for i, t in texts.items() if t.strip()}


@dataclass
class RunContext:
    """What a run kind's `execute` works with: the store, the run, its config, and the search
    context (models, sampling per role, templates, the store recorder, seed, run budget)."""

    store: Store
    run_id: str
    config: dict[str, Any]
    search: SearchContext
    recorder: StoreRecorder
    setup: ModelSetup
    notice: Callable[[str], None] = print
    work: Any = None  # a worker's WorkClaims (runs/workers.py): do only the items it claims

    @classmethod
    def build(cls, store: Store, run_id: str, config: dict[str, Any], *, api_key: str | None = None,
              on_record: Callable[[str, Any], None] | None = None,
              notice: Callable[[str], None] = print) -> "RunContext":
        setup = ModelSetup.from_config(config, api_key)
        model = setup.model(store, run_id, notice)
        recorder = StoreRecorder(store, run_id, on_record)
        # A run budget is shared by all problems of the run (each problem may have its own too).
        budget = Budget(scope="run", **config["run_budget"]) if config.get("run_budget") else None
        search = SearchContext(generator=model, templates=setup.templates, recorder=recorder,
                               seed=config.get("seed", 0), budget=budget, analysis_texts=recorder.analysis_texts,
                               evidence=evidence_view(get_pack(setup.pack), store, run_id, recorder.kept_meta),
                               **{f"{role}_sampling": s for role, s in setup.sampling.items()})
        return cls(store, run_id, config, search, recorder, setup, notice)

    def models(self) -> list[Model]:
        """Every distinct model of the run (to close their HTTP clients)."""
        found = {id(m): m for m in (self.search.generator, self.search.verifier) if m is not None}
        return list(found.values())


def new_run(store: Store, kind: str, setup: ModelSetup, **fields: Any) -> str:
    """Store a new run of `kind` whose config is the model set-up plus the kind's own fields."""
    return store.create_run(kind, run_config(kind, setup, **fields))


def run_config(kind: str, setup: ModelSetup, **fields: Any) -> dict[str, Any]:
    """The config new_run stores: the kind, the model set-up and the kind's own fields (for a
    caller that stores the run with its inputs, Store.create_run's problems and records)."""
    return {"kind": kind, **setup.config(), **fields}
