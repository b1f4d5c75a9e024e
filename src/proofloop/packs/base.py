"""What a domain pack is: the parts that make the paper's loop work outside mathematics.

A `Pack` bundles a name, a `Rubric` (what 1 / 0.5 / 0 mean and the named issue classes a
verifier reports), the four role templates as a `Templates` value (the same type
`ModelSetup.templates` carries, so every parser, role, strategy, label rule and reward works
unchanged: the templates keep the contract phrases and the boxed score), dataset loaders,
optional executable evidence and the metrics `bench` reports for it.

    >>> rubric = Rubric(levels={1.0: "right", 0.5: "minor slips", 0.0: "wrong"},
    ...                 issues=(IssueClass("wrong-result", "the answer is wrong"),))
    >>> rubric.issue_names()
    ['wrong-result']
    >>> pack = Pack(name="toy", description="a toy", rubric=rubric)
    >>> pack.templates is None, pack.dataset_names()      # no templates: the default (math) wording
    (True, [])
    >>> with_evidence(pack, "P", "proof")                 # no evidence: the problem as it is
    ('P', None)

Evidence (`Pack.evidence`) is something a program finds out about a candidate, such as the
outcome of running code against tests. It reaches the verifier as a section appended to the
problem text under EVIDENCE_HEADER (a pack's verify template says how to read it), because
the placeholders of a template are fixed by the contract; the record is kept with the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.protocol import Templates
from proofloop.protocol.templates import check_template

SCORES = (1.0, 0.5, 0.0)
EVIDENCE_HEADER = "### Execution evidence"


@dataclass(frozen=True)
class IssueClass:
    """A named kind of defect a verifier of this domain reports (e.g. "wrong-rule")."""

    name: str
    description: str


@dataclass(frozen=True)
class Rubric:
    """What each of the three scores means, and the issue classes of the domain."""

    levels: Mapping[float, str]
    issues: tuple[IssueClass, ...] = ()

    def __post_init__(self) -> None:
        if sorted(self.levels) != sorted(SCORES):
            raise ValueError(f"a rubric describes exactly the scores 1, 0.5 and 0, got {sorted(self.levels)}")

    def issue_names(self) -> list[str]:
        return [i.name for i in self.issues]


@dataclass(frozen=True)
class Evidence:
    """What running a candidate showed. `text` goes to the verifier; `record` is stored."""

    text: str
    record: dict[str, Any]


# A loader reads one data set of the pack from a folder the user names (None: none named) and
# returns at most `limit` rows (None: all) in the shape `bench grade` takes: statement, proof,
# id, human_grade (1 right / 0 wrong), max_points.
Loader = Callable[[Path | None, int | None], list[dict[str, Any]]]
# Metrics take verifier scores and labels (both in [0, 1]) and return named numbers.
Metrics = Callable[[Sequence[float], Sequence[float]], dict[str, Any]]


@dataclass(frozen=True)
class Pack:
    """One domain. `templates` None means the default (mathematics) wording."""

    name: str
    description: str
    rubric: Rubric
    templates: Templates | None = None
    loaders: Mapping[str, Loader] = field(default_factory=dict)
    evidence: Callable[[str, str], Evidence | None] | None = None
    metrics: Metrics | None = None

    def dataset_names(self) -> list[str]:
        return sorted(self.loaders)

    def load(self, dataset: str, data_dir: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The first `limit` rows of `dataset` read from `data_dir`; UserInputError for an
        unknown name or folder."""
        if dataset not in self.loaders:
            raise UserInputError(f"pack {self.name!r} has no data set {dataset!r}; "
                                 f"it has: {', '.join(self.dataset_names()) or 'none'}")
        folder = Path(data_dir) if data_dir is not None else None
        if folder is not None and not folder.is_dir():
            raise UserInputError(f"data folder {folder} does not exist or is not a directory")
        return self.loaders[dataset](folder, limit)[:limit]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (`proofloop packs show NAME --json`)."""
        return {"name": self.name, "description": self.description,
                "scores": {str(k): v for k, v in sorted(self.rubric.levels.items(), reverse=True)},
                "issue_classes": {i.name: i.description for i in self.rubric.issues},
                "templates": "default (mathematics)" if self.templates is None else "own",
                "datasets": self.dataset_names(), "evidence": self.evidence is not None,
                "metrics": self.metrics is not None}


def packaged_templates(folder: str) -> Templates:
    """The four templates shipped in proofloop/packs/templates/<folder>/, each checked."""
    base = resources.files("proofloop.packs") / "templates" / folder
    texts = {f.name: (base / f"{f.name}.md").read_text(encoding="utf-8") for f in fields(Templates)}
    for role, text in texts.items():
        check_template(role, text, f"<pack template {folder}/{role}.md>")
    return Templates(**texts)


def with_evidence(pack: Pack, problem: str, proof: str) -> tuple[str, dict[str, Any] | None]:
    """The problem as the verifier sees it (with the evidence section, if the pack has
    evidence for this candidate) and the evidence record to store (None without)."""
    if pack.evidence is None:
        return problem, None
    found = pack.evidence(problem, proof)
    if found is None:
        return problem, None
    return shown_with_evidence(problem, found.text), found.record


def shown_with_evidence(problem: str, text: str | None) -> str:
    """The problem with an evidence text appended under EVIDENCE_HEADER (None: as it is).

    >>> shown_with_evidence("P", "2 tests failed")
    'P\\n\\n### Execution evidence\\n\\n2 tests failed\\n'
    """
    if text is None:
        return problem
    return f"{problem.rstrip()}\n\n{EVIDENCE_HEADER}\n\n{text.strip()}\n"
