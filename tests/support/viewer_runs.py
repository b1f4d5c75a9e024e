"""A run store for the viewer's tests, made by the simulator through the library: a pool
search (with meta-verification), a verify run of a proof full of script and formulas, a
grade run with human grades, one without, and a run still going."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from proofloop.bench.runs import create_grade_run
from proofloop.models.factory import ModelSettings
from proofloop.runs import ModelSetup, create_prove_run, create_verify_run, execute
from proofloop.store import Store

PROBLEM = r"Prove that $n^3 - n$ is divisible by $6$ for every integer \(n\)."
# A proof with formulas in every delimiter and three ways of trying to run script.
HOSTILE_PROOF = "\n".join([
    "## Solution",
    r"Since \(n^3 - n = (n-1)n(n+1)\), it is a product of $3$ consecutive integers:",
    r"\[ (n-1)\,n\,(n+1) \equiv 0 \pmod 6. \]",
    "$$\\sum_{k=1}^{3} k = 6$$",
    "<script>window.__pwned = 'script'</script>",
    "<img src=x onerror=\"window.__pwned = 'img'\">",
    "[a link](javascript:window.__pwned='link') and [another](JaVaScRiPt:alert(1))",
    r"Hence $6 \mid n^3 - n$.",
])
POOL = {"initial": 4, "verifications": 4, "top_k": 2, "rounds": 3, "analyses_per_prompt": 2,
        "samples_per_prompt": 1, "accept": False, "meta": 2}
HUMAN = [7, 0, 6, 3, 7, 1]


@dataclass
class ViewerRuns:
    store: Store
    pool: str
    hostile: str
    graded: str
    ungraded: str
    running: str


def make_runs(db: Path) -> ViewerRuns:
    store = Store(db)
    setup = ModelSetup(ModelSettings(provider="sim"), seed=1)
    quiet = {"notice": lambda line: None}
    pool = create_prove_run(store, PROBLEM, setup, strategy="pool", options=POOL)
    execute(store, pool, **quiet)
    hostile = create_verify_run(store, "Show that $6 \\mid n^3 - n$.", HOSTILE_PROOF, setup, n=3)
    execute(store, hostile, **quiet)
    rows = [{"id": f"p{i}", "statement": f"Problem {i}: show that $x_{i} > 0$.", "proof": f"## Solution\nTake $x = {i}$.",
             "human_grade": grade} for i, grade in enumerate(HUMAN)]
    graded = create_grade_run(store, setup, grader="verifier", n=2, rows=rows)
    execute(store, graded, **quiet)
    ungraded = create_grade_run(store, setup, grader="verifier", n=1,
                                rows=[{k: v for k, v in r.items() if k != "human_grade"} for r in rows[:2]])
    execute(store, ungraded, **quiet)
    running = create_verify_run(store, "Show that $1 + 1 = 2$.", "## Solution\n$1 + 1 = 2$.", setup, n=2)
    return ViewerRuns(store, pool, hostile, graded, ungraded, running)
