"""The symbolic checker's findings as evidence for a whole-proof verifier (`proofloop verify
--symbolic`): the refuted relations without variables, outside steps that argue by
contradiction or supposition (ProofCheck.evidence; the others are mostly equations being
solved, see docs/ARCHITECTURE.md), appended to the problem the verifier reads, and the
record kept with the run.

    >>> problem = "Compute 2 + 2."
    >>> shown, record = symbolic_evidence(problem, "We have \\\\(2 + 2 = 5\\\\), so the answer is 5.")
    >>> shown.splitlines()[2], record["evidence"][0]["verdict"]
    ('### Symbolic checks', 'refuted')
    >>> symbolic_evidence(problem, "We have \\\\(2 + 2 = 4\\\\).")[0] == problem
    True
"""

from __future__ import annotations

from typing import Any

SYMBOLIC_HEADER = "### Symbolic checks"
INTRO = ("A computer algebra system (SymPy) evaluated the relations stated in the proof. These are false as "
         "written; weigh them as you would any claim you check yourself:")


def symbolic_evidence(problem: str, proof: str, *, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
    """The problem as the verifier sees it (a section of refuted relations when there are
    any) and the record to store: the verdict counts and each refutation."""
    from proofloop.steps.symbolic import check_proof  # SymPy's worker starts only here

    report = check_proof(proof, problem, timeout=timeout)
    found = report.evidence()
    record = {"counts": report.counts(), "evidence": [c.to_dict() for c in found]}
    if not found:
        return problem, record
    lines = "\n".join(f"- {c.evidence()}" for c in found)
    return f"{problem.rstrip()}\n\n{SYMBOLIC_HEADER}\n\n{INTRO}\n\n{lines}\n", record
