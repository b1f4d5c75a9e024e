"""The `math` pack: today's behaviour, the default. Its templates are None, which every role
reads as the default wording in protocol/templates/, so a run without `--pack` and a run
with `--pack math` send byte-identical prompts. Its data sets live in `bench` (bench/datasets.py).

    >>> pack.name, pack.templates, sorted(pack.rubric.levels)
    ('math', None, [0.0, 0.5, 1.0])
"""

from __future__ import annotations

from proofloop.packs.base import IssueClass, Pack, Rubric
from proofloop.packs.metrics import agreement

RUBRIC = Rubric(
    levels={1.0: "completely correct; every step carried out properly and shown clearly",
            0.5: "correct in its main line, with details left out or minor errors",
            0.0: "does not address the problem, or has a fatal error or a severe omission"},
    issues=(IssueClass("error", "a step that is false"),
            IssueClass("gap", "a step asserted without the argument it needs"),
            IssueClass("missing-case", "a case the argument does not cover"),
            IssueClass("unproved-citation", "a cited result used without proof"),
            IssueClass("wrong-answer", "the answer the problem asks for is wrong or missing")))

pack = Pack(name="math", description="competition mathematics: proofs and answers with proofs (the default)",
            rubric=RUBRIC, metrics=agreement)
