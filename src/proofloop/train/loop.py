"""One iteration of the paper's training loop (§3.1) as one stored, resumable run of kind
"train-loop". Its stages, in order:

1. verifier           GRPO on the verifier set (`--verifier-data`: labelled proofs)
2. generator-init     the generator starts from the trained verifier (one model, both roles)
3. generator          GRPO on the problems, rewarded by the judge (verifier + meta-verifier)
4. generate           new proofs: one `prove` run per problem, on the served generator
5. label              a `label` run over those proofs (n analyses, m meta-verifications, k)
6. next-verifier-set  the seed set plus the newly labelled proofs, for the next iteration
7. rft                rejection fine-tuning on the best verified proofs and endorsed
                      analyses: the model the next iteration starts from

Every stage records what it made (paths, child run ids, step counts) under `stages` in the
run's config the moment it finishes, so a resumed loop (`proofloop train loop --resume RUN`,
or `proofloop resume RUN`) starts at the first unfinished stage. A stage that was cut short
continues where it was: GRPO and SFT from their last checkpoint (every `save_steps`); the
prove and label runs are ordinary runs of the store, made once and resumed, so their finished
model calls come back from the call cache. The GRPO judges' calls are cached in the store
too, under the loop's own run id.

Generating and labelling need the new models *served*: `generator_server` is the server the
prove runs ask (a vLLM server of OUTPUT_DIR/generator, or the simulator in the demo), the
loop's own model settings are the judge (verifier and meta-verifier) used for the rewards
and for labelling. With the simulator in both places the loop exercises every stage and
writes every artefact, but what is generated does not come from the trained weights: it
tests the plumbing, not learning.

    >>> from proofloop.store import Store
    >>> from proofloop.models.factory import ModelSettings
    >>> from proofloop.runs import ModelSetup
    >>> import json, pathlib
    >>> seed = {"problem": "Prove that 1 + 1 = 2.", "proof": "By definition.", "status": "labelled", "score": 1.0}
    >>> _ = pathlib.Path("seed.jsonl").write_text(json.dumps(seed) + "\\n")
    >>> store = Store(":memory:")
    >>> run = create_loop_run(store, problems=[{"id": "a", "problem": "Prove that 1 + 1 = 2."}],
    ...                       verifier_data="seed.jsonl", model="tiny", output_dir="out",
    ...                       judge=ModelSetup(ModelSettings(provider="sim")))
    >>> config = store.get_run(run).config
    >>> store.get_run(run).kind, config["base_model"], config["stages"]
    ('train-loop', 'tiny', {})

(`proofloop train loop` and `make train-demo` run one; tests/test_train_loop.py runs it whole.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.label import LabelItem, LabelRule
from proofloop.models.base import Timeouts
from proofloop.models.factory import ModelSettings
from proofloop.runs import ModelSetup, RunContext, RunKind, execute, new_run, register
from proofloop.runs.label import create_label_run, rule_config
from proofloop.runs.prove import create_prove_run
from proofloop.runs.render import usage_line
from proofloop.store import RunStatus, Store

KIND = "train-loop"
STAGES = ("verifier", "generator-init", "generator", "generate", "label", "next-verifier-set", "rft")
TINY = "tiny"  # --model tiny: the in-process model of train/tiny.py (no download)


@dataclass(frozen=True)
class LoopSettings:
    """How big one iteration is. The defaults are a small real run; `make train-demo` and
    the tests shrink them."""

    steps: int = 100                  # GRPO optimiser steps, per role
    num_generations: int = 8          # GRPO group size
    max_completion_length: int = 1024
    learning_rate: float = 1e-6
    save_steps: int = 50              # checkpoints (GRPO and SFT): where a killed stage resumes
    vllm: str | None = None           # GRPO generation: None (transformers), "server", "colocate"
    with_meta: bool = False           # the verifier's reward includes the meta-verifier's rating
    judge_n: int = 4                  # verifier analyses per proof in the generator's reward
    proofs_per_problem: int = 4       # stage generate
    n: int = 4                        # stage label: analyses per proof
    m: int = 3                        # meta-verifications per issue-reporting analysis
    k: int = 2                        # valid analyses needed at the lowest score
    rft_steps: int | None = None      # None: one pass over the RFT set
    rft_max_length: int = 8192
    seed: int = 0

    def __post_init__(self) -> None:
        if self.k > self.n:
            raise UserInputError(f"k={self.k} exceeds n={self.n}: no proof could be labelled below 1")
        for name in ("steps", "save_steps", "judge_n", "proofs_per_problem", "n", "m", "k"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")


# ---------------------------------------------------------------------------- model set-ups


def setup_fields(setup: ModelSetup) -> dict[str, Any]:
    """The arguments that rebuild `setup` exactly (ModelSetup.config keeps the resolved
    sampling, not the options it came from; a child run is created from these)."""
    return {"settings": dataclasses.asdict(setup.settings), "temperature": setup.temperature, "top_p": setup.top_p,
            "max_tokens": setup.max_tokens, "verify_max_tokens": setup.verify_max_tokens, "seed": setup.seed,
            "max_concurrency": setup.max_concurrency, "attempt_s": setup.timeouts.attempt_s}


def setup_from(fields: Mapping[str, Any], api_key: str | None = None) -> ModelSetup:
    f = dict(fields)
    attempt = f.pop("attempt_s", None)
    timeouts = Timeouts(attempt_s=attempt) if attempt else Timeouts()
    return ModelSetup(ModelSettings(**f.pop("settings")), timeouts=timeouts,
                      api_key=api_key, **f)


# ---------------------------------------------------------------------------- create


def read_problems(path: str | Path) -> list[dict[str, Any]]:
    """Problem rows of a JSONL / JSON / CSV / parquet file (`problem` or `statement`, `id`)."""
    from proofloop.rows import read_rows

    return read_rows(path)


def create_loop_run(store: Store, *, problems: Sequence[Mapping[str, Any]], verifier_data: str | Path, model: str,
                    output_dir: str | Path, judge: ModelSetup, generator: ModelSetup | None = None,
                    settings: LoopSettings = LoopSettings()) -> str:
    """A stored train-loop run. `problems`: rows with `problem` (or `statement`) and an
    optional `id`; `judge`: the served verifier / meta-verifier; `generator`: the server
    that generates in stage 4 (default: the judge's)."""
    texts = [str(p.get("problem") or p.get("statement") or "").strip() for p in problems]
    if not texts or not all(texts):
        raise UserInputError("the problems need a non-empty `problem` (or `statement`) in every row")
    data = Path(verifier_data)
    if not data.exists() and not str(verifier_data).startswith("hf:"):
        raise UserInputError(f"verifier data not found: {verifier_data}")
    judge = judge.resolved()
    generator = (generator or judge).resolved()
    return new_run(store, KIND, judge, problems=[{"id": str(p.get("id") or i), "problem": t}
                                                 for i, (p, t) in enumerate(zip(problems, texts), 1)],
                   verifier_data=str(data.resolve()) if data.exists() else str(verifier_data), base_model=model,
                   output_dir=str(Path(output_dir).resolve()), settings=dataclasses.asdict(settings),
                   judge=setup_fields(judge), generator_server=setup_fields(generator), stages={})


def point_servers(store: Store, run_id: str, *, judge: Mapping[str, str | None],
                  generator: Mapping[str, str | None]) -> None:
    """Point a stored loop at servers that moved or appeared (e.g. vLLM serving the trained
    generator) before resuming it. None leaves a setting as it is. A new generator server
    makes an unfinished generate stage start again with new prove runs; finished child runs
    keep their own servers."""
    config = store.get_run(run_id).config
    changes: dict[str, Any] = {}
    for key, given in (("judge", judge), ("generator_server", generator)):
        given = {k: v for k, v in given.items() if v is not None}
        if given:
            fields = dict(config[key])
            fields["settings"] = {**fields["settings"], **given}
            changes[key] = fields
    stages = config.get("stages") or {}
    if "generator_server" in changes and stages.get("generate", {}).get("status") not in (None, "finished"):
        changes["stages"] = {k: v for k, v in stages.items() if k != "generate"}
    if "judge" in changes:  # the loop's own model settings are the judge's
        model = {**config["model"], **{k: v for k, v in judge.items() if v is not None}}
        changes["model"] = model
    if changes:
        store.update_run_config(run_id, changes)


# ---------------------------------------------------------------------------- the loop


class Loop:
    """The stages of one stored loop run; `run()` does those not yet finished."""

    def __init__(self, ctx: RunContext):
        self.ctx, self.store, self.run_id = ctx, ctx.store, ctx.run_id
        self.config = ctx.config
        self.settings = LoopSettings(**self.config["settings"])
        self.out = Path(self.config["output_dir"])
        self.stages: dict[str, dict[str, Any]] = dict(self.config.get("stages") or {})
        self.stopping = threading.Event()

    def path(self, name: str) -> Path:
        return self.out / name

    def run(self) -> None:
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "verifier": self.train_verifier, "generator-init": self.init_generator,
            "generator": self.train_generator, "generate": self.generate, "label": self.label,
            "next-verifier-set": self.next_verifier_set, "rft": self.rft}
        for name in STAGES:
            if self.stopping.is_set():
                return
            if self.stages.get(name, {}).get("status") == "finished":
                self.ctx.notice(f"[loop] {name}: finished earlier, skipped")
                continue
            self.ctx.notice(f"[loop] {name}: starting")
            started = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # trainers print their logs: stdout keeps the summary
                outputs = steps[name]()
            self.record(name, status="finished", seconds=round(time.monotonic() - started, 2), **outputs)
            self.ctx.notice(f"[loop] {name}: finished")
            if name == self.config.get("stop_after"):
                return

    def record(self, name: str, **fields: Any) -> None:
        """Store what a stage made (merged into its record) in the run's config at once."""
        self.stages[name] = {**self.stages.get(name, {}), **fields}
        self.store.update_run_config(self.run_id, {"stages": self.stages})

    # ---- training stages

    def base_model(self) -> str:
        """The model the iteration starts from; `tiny` is built and saved once (seeded)."""
        if self.config["base_model"] != TINY:
            return self.config["base_model"]
        from proofloop.train.tiny import tiny_model, tiny_tokenizer

        where = self.path("base-model")
        if not (where / "config.json").is_file():
            tok = tiny_tokenizer()
            tiny_model(tok, hidden=32, layers=1, seed=self.settings.seed).save_pretrained(where)
            tok.save_pretrained(where)
        return str(where)

    def grpo(self, task: str, model: str, rows: Sequence[Mapping[str, Any]], judge: Any) -> dict[str, Any]:
        from proofloop.train.grpo import GrpoSettings, last_checkpoint, train_grpo

        s, out = self.settings, self.path(task)
        resume = last_checkpoint(out) is not None  # cut short earlier: continue from its checkpoint
        grpo = GrpoSettings(steps=s.steps, num_generations=s.num_generations,
                            max_completion_length=s.max_completion_length, learning_rate=s.learning_rate,
                            save_steps=s.save_steps, vllm=s.vllm, seed=s.seed)
        run = train_grpo(task, model, rows, out, settings=grpo, judge=judge,
                         with_meta=s.with_meta and task == "verifier", resume=resume)
        return {"model": str(out), "from": model, "steps": run.steps, "resumed": resume,
                "rewards": str(run.rewards_path), "format_failures": run.stats.format_failures,
                "failed_judgements": run.stats.failed_judgements}

    def judge(self) -> Any:
        """The served verifier / meta-verifier of the rewards; its calls are cached in the
        store under this run's id (a fresh model per stage: TRL judges in its own event loop)."""
        from proofloop.train.judge import Judge

        setup = self.ctx.setup
        return Judge(setup.model(self.store, self.run_id, self.ctx.notice), n=self.settings.judge_n,
                     sampling=setup.sampling["verify"], templates=setup.templates)

    def train_verifier(self) -> dict[str, Any]:
        from proofloop.train.sources import read_source

        rows = read_source(self.config["verifier_data"])
        judge = self.judge() if self.settings.with_meta else None
        return {"data": self.config["verifier_data"], **self.grpo("verifier", self.base_model(), rows, judge)}

    def init_generator(self) -> dict[str, Any]:
        """The generator starts from the verifier's weights (paper §3.1): its model is the
        verifier stage's output, checked here so a missing one fails before training."""
        verifier = Path(self.stages["verifier"]["model"])
        if not (verifier / "config.json").is_file():
            raise UserInputError(f"no trained verifier in {verifier}: resume the loop to train it again")
        return {"model": str(verifier)}

    def train_generator(self) -> dict[str, Any]:
        model = self.stages["generator-init"]["model"]
        return self.grpo("generator", model, self.config["problems"], self.judge())

    # ---- generating and labelling (child runs of the store)

    def child_runs(self, stage: str, make: Callable[[], list[str]]) -> list[str]:
        """The stage's child runs: made once and recorded before any is executed, so a
        resumed loop finds and resumes the same runs (their calls replay from the cache)."""
        runs = self.stages.get(stage, {}).get("runs")
        if runs is None:
            runs = make()
            self.record(stage, status="running", runs=runs)
        for run_id in runs:
            if self.store.get_run(run_id).status != RunStatus.FINISHED.value:
                execute(self.store, run_id, api_key=self.ctx.setup.api_key, notice=self.ctx.notice)
        return runs

    def generate(self) -> dict[str, Any]:
        setup = setup_from(self.config["generator_server"], self.ctx.setup.api_key)
        options = {"k": self.settings.proofs_per_problem}
        runs = self.child_runs("generate", lambda: [
            create_prove_run(self.store, p["problem"], setup, strategy="single", options=options)
            for p in self.config["problems"]])
        proofs = self.new_proofs(runs)
        if not proofs:  # nothing to label: say why, and leave the stage unfinished
            statuses = Counter(p.status for r in runs for p in self.store.proofs(r))
            raise UserInputError(f"the generator wrote no usable proof ({sum(statuses.values())} outputs, statuses "
                                 f"{dict(statuses)}): resume with a stronger generator server (--gen-*)")
        return {"runs": runs, "server": setup.settings.base_url or setup.settings.provider, "proofs": len(proofs)}

    def new_proofs(self, runs: Sequence[str]) -> list[LabelItem]:
        """The usable proofs the prove runs made, each once, in run order."""
        items: dict[str, LabelItem] = {}
        for run_id in runs:
            problems = {p.id: p.text for p in self.store.problems(run_id)}
            for proof in self.store.proofs(run_id):
                if proof.status == "ok" and (proof.solution or "").strip():
                    items.setdefault(proof.id, LabelItem(id=proof.id, problem=problems[proof.problem_id],
                                                         proof=proof.raw, extra={"prove_run": run_id}))
        return list(items.values())

    def label(self) -> dict[str, Any]:
        s, output = self.settings, self.path("labels.jsonl")
        items = self.new_proofs(self.stages["generate"]["runs"])
        rule = LabelRule(m=s.m, k=s.k)
        [run_id] = self.child_runs("label", lambda: [create_label_run(
            self.store, items, setup_from(self.config["judge"], self.ctx.setup.api_key), n=s.n, rule=rule,
            output=output, source=f"train-loop {self.run_id}")])
        summary = self.store.get_run(run_id).summary or {}
        return {"runs": [run_id], "output": str(output), "n": s.n, **rule_config(rule),
                "labels": summary.get("labels"), "statuses": summary.get("statuses")}

    # ---- the next iteration's data and model

    def next_verifier_set(self) -> dict[str, Any]:
        """The seed set and the newly labelled proofs, as proof rows (the next iteration's
        --verifier-data) and in TRL's layout; the meta-verifier set of the new labels too."""
        from proofloop.train.datasets import meta_verifier_set, verifier_set, write_dataset, write_rows
        from proofloop.train.sources import read_source

        new = [r for r in read_source(self.stages["label"]["output"]) if r["status"] == "labelled"]
        ids = {str(r["id"]) for r in new}
        rows = [r for r in read_source(self.config["verifier_data"]) if str(r.get("id")) not in ids] + new
        data = self.path("data")
        out = {"rows": str(write_rows(rows, data / "verifier-next.jsonl")), "seed": len(rows) - len(new),
               "labelled": len(new),
               "trl": str(write_dataset(verifier_set(rows, origin="the next verifier set"),
                                        data / "verifier-next.trl.jsonl"))}
        try:  # meta-verified analyses exist only where an analysis reported an issue, and need a majority
            out["meta_verifier"] = str(write_dataset(meta_verifier_set(new), data / "meta-verifier-next.trl.jsonl"))
        except UserInputError as e:  # an optional set: say why there is none
            out["meta_verifier_missing"] = str(e)
        return out

    def rft(self) -> dict[str, Any]:
        """SFT of the trained generator (which holds both roles) on the selected outputs."""
        from proofloop.train.rft import SftSettings, last_checkpoint, rft_rows, train_rft
        from proofloop.train.sources import read_source

        s, out = self.settings, self.path("rft")
        rows = rft_rows(read_source(self.stages["label"]["output"]))
        resume = last_checkpoint(out) is not None
        settings = SftSettings(steps=s.rft_steps, max_length=s.rft_max_length, save_steps=s.save_steps, seed=s.seed)
        summary = train_rft(rows, model=self.stages["generator"]["model"], output_dir=out, settings=settings,
                            resume=resume)
        return {"model": str(out), "from": self.stages["generator"]["model"], "examples": summary["examples"],
                "generator_examples": summary["generator"], "verifier_examples": summary["verifier"],
                "steps": summary["steps"], "resumed": resume, "dataset": summary["dataset"]}


# ---------------------------------------------------------------------------- run kind


async def execute_loop(ctx: RunContext) -> dict[str, Any]:
    """Do (or finish) the loop. The stages block (training) and start runs of their own
    (each with its own event loop), so they run in a worker thread. A thread cannot be
    cancelled: Ctrl-C lets the stage in progress end (kill the process to stop at once;
    checkpoints and finished calls are kept either way)."""
    loop = Loop(ctx)
    try:
        await asyncio.to_thread(loop.run)
    except asyncio.CancelledError:  # Ctrl-C / SIGTERM: the stage in progress ends, no next one starts
        loop.stopping.set()
        raise
    summary = summarise(loop.stages, ctx.config)
    children = [r for stage in ("generate", "label") for r in loop.stages.get(stage, {}).get("runs") or ()]
    summary["child_calls"] = {r: ctx.store.run_usage(r).calls for r in children}
    return summary


def summarise(stages: Mapping[str, Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    """The loop's summary: every stage's record and where its artefacts are. A loop stopped
    early (--stop-after) names the last stage it finished."""
    def get(stage: str, key: str) -> Any:
        return stages.get(stage, {}).get(key) if stages.get(stage, {}).get("status") == "finished" else None

    label_runs = get("label", "runs") or [None]
    artefacts = {"verifier": get("verifier", "model"), "generator": get("generator", "model"),
                 "prove_runs": get("generate", "runs"), "label_run": label_runs[0], "labels": get("label", "output"),
                 "next_verifier_set": get("next-verifier-set", "rows"),
                 "next_verifier_set_trl": get("next-verifier-set", "trl"),
                 "meta_verifier_set": get("next-verifier-set", "meta_verifier"),
                 "rft_set": get("rft", "dataset"), "rft_model": get("rft", "model")}
    done = [s for s in STAGES if stages.get(s, {}).get("status") == "finished"]
    return {"kind": KIND, "output_dir": config["output_dir"], "stages": {k: dict(v) for k, v in stages.items()},
            "artefacts": artefacts, "next_model": artefacts["rft_model"],
            "stopped_after": done[-1] if done and len(done) < len(STAGES) else None}


STAGE_LINES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "verifier": lambda r: (f"verifier GRPO   {r['steps']} steps from {r['from']} -> {r['model']}   "
                           f"(rewards: {r['rewards']})"),
    "generator-init": lambda r: f"generator init  from {r['model']}",
    "generator": lambda r: f"generator GRPO  {r['steps']} steps -> {r['model']}   (rewards: {r['rewards']})",
    "generate": lambda r: f"generated       {r['proofs']} proofs on {r['server']}: prove runs {', '.join(r['runs'])}",
    "label": lambda r: (f"labelled        {', '.join(f'{k}: {v}' for k, v in (r.get('labels') or {}).items())} "
                        f"(n={r['n']}, m={r['m']}, k={r['k']}) -> {r['output']}   (label run {r['runs'][0]})"),
    "next-verifier-set": lambda r: (f"next verifier   {r['labelled']} new + {r['seed']} seed rows -> {r['rows']} "
                                    f"(TRL layout: {r['trl']})"
                                    + (f"; meta-verifier set -> {r['meta_verifier']}"
                                       if r.get("meta_verifier") else "")),
    "rft": lambda r: (f"RFT             {r['examples']} examples ({r['generator_examples']} proofs, "
                      f"{r['verifier_examples']} analyses; set {r['dataset']}), {r['steps']} steps "
                      f"-> {r['model']}   (the next iteration's model)"),
}


def render_loop(summary: dict[str, Any]) -> list[str]:
    finished = {k: v for k, v in summary["stages"].items() if v.get("status") == "finished"}
    lines = [f"training loop in {summary['output_dir']}"]
    lines += [STAGE_LINES[name](finished[name]) for name in STAGES if name in finished]
    lines += [f"{name:<18}not done" for name in STAGES if name not in finished]
    calls = summary.get("child_calls") or {}
    if calls:
        lines.append(f"model calls     {sum(calls.values())} in the prove and label runs "
                     "(the GRPO judges' calls: the next line)")
    return lines + [usage_line(summary)]


register(RunKind(KIND, execute_loop, render_loop))
