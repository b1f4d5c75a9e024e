"""Automatic labelling of proofs (DeepSeekMath-V2 §2.3): n verifier analyses per proof, m
meta-verifications per analysis that reports issues, and a vote that turns them into a label.

The rule, as `decide` implements it (README "Automatic labelling: the rule" has every case):

1. An analysis *reports issues* when its score is 0 or 0.5 (score 1: nothing to check).
2. Each such analysis gets m meta-verifier ratings. The meta-verifier rates the *analysis*:
   1 = every claimed defect is real and the analysis is accurate; 0.5 = either some claimed
   defects are real and some unreasonable, or all are real but the analysis misstates a
   detail or its score; 0 = every claimed defect is unreasonable. A rating *confirms* the
   analysis when it is >= `confirm_at`.
   Default `confirm_at=0.5`: the paper asks that the ratings "confirm its findings", and the
   findings are the claimed defects; both meanings of 0.5 say at least one of them is real,
   and the label's value is guarded separately by k analyses agreeing on the lowest score.
   `confirm_at=1` is the strict reading (a 0.5 may also mean the analysis got its score
   wrong): it confirms only fully endorsed analyses, so fewer proofs get a label below 1.
3. Counted over the m requested ratings, an issue-reporting analysis is
   VALID when a strict majority confirm it (confirmations > m / 2; a tie is no majority),
   PARTIAL when it is not valid but a strict majority of ratings are above 0 (some claimed
   defect is real; only possible with confirm_at=1), and INVALID otherwise.
4. The lowest score s is, by default (`lowest="all"`, the paper's wording "examine the
   analyses that assign the lowest score"), the lowest score over ALL analyses; with
   `lowest="valid"` it is the lowest score among valid analyses. Then, in this order:
   - no analysis is valid or partial (every reported issue was rejected, or none was
     reported): the label is 1;
   - at least k valid analyses score s < 1: the label is s;
   - otherwise the proof is undecided and is discarded or sent to a human (`undecided`).
   So under "all", two rejected 0-score analyses keep two valid 0.5s from labelling 0.5,
   and a proof is never labelled 1 while an issue is confirmed, even only in part.

Failures are errors, never votes:
- a failed or unparsable meta rating confirms nothing and rejects nothing: it could have
  been 0, 0.5 or 1. An analysis whose validity depends on its failed ratings is
  UNDETERMINED; the decision stands only if it is the same however the failed ratings
  would resolve; otherwise the proof's status is "error" (so a proof is never labelled 1
  while an issue-reporting analysis awaits its verdict);
- a failed or unparsable analysis is a missing vote. The rule runs on the analyses that were
  obtained, provided they are at least `quorum` (default 1/2) of those asked for and at
  least one; else "error". All n verifications failing can therefore never label a proof 1.

    >>> rule = LabelRule(m=3, k=2)
    >>> decide([Vote(1.0), Vote(1.0), Vote(1.0)], rule).score         # no issue found
    1.0
    >>> confirmed, rejected = (1.0, 1.0, 0.0), (0.0, 0.0, 0.0)          # 2 of 3 confirm; none
    >>> d = decide([Vote(0.5, confirmed), Vote(0.5, confirmed), Vote(1.0)], rule)
    >>> d.status.value, d.score
    ('labelled', 0.5)
    >>> two_rejected_zeros = [Vote(0.0, rejected), Vote(0.0, rejected)]
    >>> decide([Vote(0.5, confirmed), Vote(0.5, confirmed)] + two_rejected_zeros, rule).status.value
    'discarded'
    >>> LabelRule(m=3, k=2, lowest="valid")
    LabelRule(m=3, k=2, confirm_at=0.5, quorum=0.5, undecided='discard', lowest='valid')
    >>> half = (0.5, 0.5, 0.0)                                          # partly confirmed
    >>> decide([Vote(0.0, half), Vote(0.0, half)], LabelRule(m=3, k=2, confirm_at=1)).status.value
    'discarded'
    >>> decide([Vote(None), Vote(None), Vote(None)], rule).status.value  # every call failed
    'error'

The pipeline (`label_items`) runs the calls through a `Model`; runs/label.py makes it a
stored, resumable run of kind "label", which writes JSONL / parquet rows ready for training
(`result_row`, `write_parquet`).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

from proofloop.errors import UserInputError
from proofloop.rows import read_rows
from proofloop.models.base import Sampling
from proofloop.models.wrapper import Model
from proofloop.protocol import Templates
from proofloop.roles import meta_verify, verify
from proofloop.roles.records import AnalysisRecord, MetaRecord, ProblemView, ProofRecord
from proofloop.protocol.types import ParseStatus


ISSUE_SCORES = (0.0, 0.5)
RATINGS = (0.0, 0.5, 1.0)  # what a meta-verifier may answer
UNDECIDED_POLICIES = ("discard", "human")
LOWEST_READINGS = ("all", "valid")

# ---------------------------------------------------------------------------- the pure rule


class Validity(str, Enum):
    """What one analysis counts for in the vote (ratings counted over the m requested)."""

    NO_ISSUE = "no_issue"          # score 1: reports no issue, not meta-verified
    VALID = "valid"                # reports issues; a majority of ratings confirm (>= confirm_at)
    PARTIAL = "partial"            # reports issues; not valid, but a majority of ratings are above 0
    INVALID = "invalid"            # reports issues; neither valid nor partial
    UNDETERMINED = "undetermined"  # reports issues; which of the three depends on failed ratings
    FAILED = "failed"              # the analysis itself failed (call error or unparsable)


class Status(str, Enum):
    LABELLED = "labelled"
    DISCARDED = "discarded"  # undecided, policy "discard"
    HUMAN = "human"          # undecided, policy "human": for a person to grade
    ERROR = "error"          # failures leave the rule unable to decide


@dataclass(frozen=True)
class LabelRule:
    """Parameters of the vote. `m`: ratings requested per issue-reporting analysis (the
    majority is over these m, failed ones included); `k`: valid analyses needed at the
    lowest score; `confirm_at`: the lowest rating that confirms (0.5 or 1); `quorum`: the
    share of analyses that must have succeeded; `undecided`: "discard" or "human";
    `lowest`: "all" (the lowest score over all analyses) or "valid" (over valid ones)."""

    m: int
    k: int
    confirm_at: float = 0.5
    quorum: float = 0.5
    undecided: str = "discard"
    lowest: str = "all"

    def __post_init__(self) -> None:
        if self.m < 1 or self.k < 1:
            raise UserInputError(f"m and k must be at least 1 (got m={self.m}, k={self.k})")
        if self.confirm_at not in (0.5, 1.0):
            raise UserInputError(f"confirm_at must be 0.5 or 1 (got {self.confirm_at})")
        if not 0.0 < self.quorum <= 1.0:
            raise UserInputError(f"quorum must be in (0, 1] (got {self.quorum})")
        if self.undecided not in UNDECIDED_POLICIES:
            raise UserInputError(f"undecided must be 'discard' or 'human' (got {self.undecided!r})")
        if self.lowest not in LOWEST_READINGS:
            raise UserInputError(f"lowest must be 'all' or 'valid' (got {self.lowest!r})")


@dataclass(frozen=True)
class Vote:
    """One analysis as the rule sees it: its score (None: the analysis failed) and, when it
    reports issues, its meta ratings (None: that rating failed; missing ones count as failed)."""

    score: float | None
    ratings: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class Decision:
    status: Status
    score: float | None  # the label; None unless labelled
    reason: str
    validity: tuple[Validity, ...]

    @property
    def labelled(self) -> bool:
        return self.status is Status.LABELLED


def _counts(vote: Vote, rule: LabelRule) -> tuple[int, int, int]:
    """(ratings that confirm, ratings above 0, ratings failed or missing) out of the m requested."""
    if len(vote.ratings) > rule.m:
        raise ValueError(f"{len(vote.ratings)} meta ratings for m={rule.m}")
    known = [r for r in vote.ratings if r is not None]
    if any(r not in RATINGS for r in known):
        raise ValueError(f"meta ratings {known} are not all one of 0, 0.5, 1")
    return sum(r >= rule.confirm_at for r in known), sum(r > 0 for r in known), rule.m - len(known)


def confirmations(vote: Vote, rule: LabelRule) -> tuple[int, int]:
    """(ratings that confirm, ratings that failed or are missing) out of the m requested."""
    yes, _, failed = _counts(vote, rule)
    return yes, failed


def _settled(yes: int, above_zero: int, m: int) -> Validity:
    if 2 * yes > m:
        return Validity.VALID
    if 2 * above_zero > m:
        return Validity.PARTIAL
    return Validity.INVALID


def possible_validities(vote: Vote, rule: LabelRule) -> frozenset[Validity]:
    """What an issue-reporting analysis could be once its failed ratings are known: each of
    them could be 0 (counts for nothing), 1 (confirms) or 0.5 (confirms at confirm_at=0.5,
    only counts as above 0 at confirm_at=1)."""
    yes, above_zero, failed = _counts(vote, rule)
    partial_only = failed if rule.confirm_at > 0.5 else 0
    return frozenset(_settled(yes + a, above_zero + a + b, rule.m)
                     for a in range(failed + 1) for b in range(min(partial_only, failed - a) + 1))


def validity(vote: Vote, rule: LabelRule) -> Validity:
    if vote.score is None:
        return Validity.FAILED
    if vote.score not in ISSUE_SCORES:
        if vote.score != 1.0:
            raise ValueError(f"score {vote.score} is not one of 0, 0.5, 1")
        return Validity.NO_ISSUE
    options = possible_validities(vote, rule)
    return next(iter(options)) if len(options) == 1 else Validity.UNDETERMINED


# The evidence the rule reads once every rating is known: valid analyses at score 0, valid
# analyses at score 0.5, whether any analysis is partial.
_Evidence = tuple[int, int, bool]


def _resolutions(votes: Sequence[Vote], rule: LabelRule) -> set[_Evidence]:
    """Every evidence the failed ratings could lead to (a single one when none failed)."""
    states: set[_Evidence] = {(0, 0, False)}
    for vote in votes:
        if vote.score not in ISSUE_SCORES:
            continue
        options = possible_validities(vote, rule)
        states = {(at0 + (x is Validity.VALID and vote.score == 0.0),
                   at_half + (x is Validity.VALID and vote.score == 0.5),
                   partial or x is Validity.PARTIAL)
                  for at0, at_half, partial in states for x in options}
    return states


def _rule_on(evidence: _Evidence, lowest_of_all: float, rule: LabelRule) -> float | None:
    """The rule on settled evidence: the label, or None for undecided."""
    at0, at_half, partial = evidence
    valid = {0.0: at0, 0.5: at_half}
    if not at0 and not at_half and not partial:
        return 1.0  # no reported issue is confirmed, even in part
    if rule.lowest == "all":
        lowest = lowest_of_all  # < 1 here: an analysis reports an issue
    else:
        lowest = min((s for s, c in valid.items() if c), default=1.0)  # 1: only partial ones
    return lowest if lowest < 1.0 and valid[lowest] >= rule.k else None


def _reason(votes: Sequence[Vote], kinds: Sequence[Validity], label: float | None, rule: LabelRule) -> str:
    """Why: read from the analyses whose validity is settled."""
    valid = Counter(v.score for v, x in zip(votes, kinds) if x is Validity.VALID)
    issues = sum(1 for v in votes if v.score in ISSUE_SCORES)
    partial = sum(1 for x in kinds if x is Validity.PARTIAL)
    pending = sum(1 for x in kinds if x is Validity.UNDETERMINED)
    if label == 1.0:
        return ("no analysis reports an issue" if not issues
                else f"meta-verification rejected all {issues} issue-reporting analyses")
    if rule.lowest == "all":
        lowest = min(v.score for v in votes if v.score is not None)
        at_lowest = sum(1 for v in votes if v.score == lowest)
        text = f"lowest score {lowest:g}: {valid[lowest]} of {at_lowest} analyses valid"
    elif valid:
        lowest = min(valid)
        text = f"lowest valid score {lowest:g}: {valid[lowest]} valid analyses"
    else:
        text = "no valid analysis"
    text += f" (k={rule.k})" if label is not None else f", k={rule.k} needed"
    if label is None and partial:
        text += f"; {partial} partly confirmed (a majority of ratings above 0): not issue-free"
    if pending:
        text += f"; {pending} with failed meta-verifications cannot change this"
    return text


def decide(votes: Sequence[Vote], rule: LabelRule) -> Decision:
    """The label of one proof from its analyses (see the module docstring for the rule)."""
    kinds = tuple(validity(v, rule) for v in votes)
    scores = [v.score for v, x in zip(votes, kinds) if x is not Validity.FAILED]
    if not scores or len(scores) < rule.quorum * len(votes):
        return Decision(Status.ERROR, None, f"only {len(scores)} of {len(votes)} analyses gave a score "
                        f"(quorum {rule.quorum:g}); the others failed or could not be parsed", kinds)
    labels = {_rule_on(e, min(scores), rule) for e in _resolutions(votes, rule)}
    if len(labels) > 1:
        pending = sum(1 for x in kinds if x is Validity.UNDETERMINED)
        return Decision(Status.ERROR, None, f"the label depends on {pending} issue-reporting "
                        "analyses whose meta-verifications failed", kinds)
    label = labels.pop()
    if label is None:
        status = Status.HUMAN if rule.undecided == "human" else Status.DISCARDED
    else:
        status = Status.LABELLED
    return Decision(status, label, _reason(votes, kinds, label, rule), kinds)


# ---------------------------------------------------------------------------- inputs

ITEM_FIELDS = ("problem", "proof", "id")
_ALIASES = {"problem": ("problem", "question", "statement"), "proof": ("proof", "solution"), "id": ("id",)}


@dataclass
class LabelItem:
    """One proof to label. `extra` keeps the input's other columns (e.g. an expert grade)."""

    id: str
    problem: str
    proof: str
    extra: dict[str, Any] = field(default_factory=dict)


def parse_fields(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """['problem=question', 'proof=model_prediction.proof'] -> {'problem': 'question', ...}."""
    pairs = (items or {}).items() if isinstance(items, Mapping) or items is None else (
        tuple(s.split("=", 1)) if "=" in s else (s, "") for s in items)
    mapping = {}
    for target, column in pairs:
        target, column = target.strip(), column.strip()
        if target not in ITEM_FIELDS:
            raise UserInputError(f"unknown field {target!r} in --field; fields: {', '.join(ITEM_FIELDS)}")
        if not column:
            raise UserInputError(f"bad --field {target!r}: expected FIELD=COLUMN, e.g. problem=question")
        mapping[target] = column
    return mapping


def _lookup(row: Mapping[str, Any], column: str) -> tuple[bool, Any]:
    """A column, or a dotted path into nested objects (model_prediction.proof)."""
    if column in row:
        return True, row[column]
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def rows_to_items(rows: Sequence[Mapping[str, Any]], fields: Iterable[str] | Mapping[str, str] | None = None,
                  *, origin: str = "input") -> list[LabelItem]:
    """Map rows onto LabelItems; without an id the 1-based row number is the id."""
    if not rows:
        raise UserInputError(f"{origin}: no rows")
    mapping = parse_fields(fields)
    columns = set(rows[0])
    for target in ITEM_FIELDS:
        if target not in mapping:
            found = next((c for c in _ALIASES[target] if c in columns), None)
            if found is not None:
                mapping[target] = found
            elif target != "id":
                raise UserInputError(f"{origin}: no {target} column; map one with --field {target}=COLUMN "
                                     f"(columns: {', '.join(sorted(columns))})")
    used = {c.split(".")[0] for c in mapping.values()}
    items = []
    for i, row in enumerate(rows, 1):
        values = {}
        for target, column in mapping.items():
            present, value = _lookup(row, column)
            if not present or (target != "id" and _blank(value)):
                raise UserInputError(f"{origin}: row {i} has no {target} (column {column!r})")
            values[target] = None if _blank(value) else str(value)
        items.append(LabelItem(id=values.get("id") or str(i), problem=values["problem"], proof=values["proof"],
                               extra={k: v for k, v in row.items() if k not in used}))
    ids = Counter(item.id for item in items)
    duplicates = sorted(x for x, c in ids.items() if c > 1)
    if duplicates:
        raise UserInputError(f"{origin}: duplicate ids {duplicates[:5]}; map a unique column with --field id=COLUMN")
    return items


def load_items(path: str | Path, fields: Iterable[str] | Mapping[str, str] | None = None) -> list[LabelItem]:
    """Proofs from a JSONL / JSON / CSV / parquet file."""
    if not Path(path).is_file():
        raise UserInputError(f"proofs file not found: {path}")
    return rows_to_items(read_rows(path), fields, origin=str(path))


# ---------------------------------------------------------------------------- the pipeline


@dataclass
class LabelledProof:
    """One proof's evidence and decision."""

    item: LabelItem
    analyses: list[AnalysisRecord]
    ratings: dict[str, list[MetaRecord]]  # analysis id -> its meta ratings (issue-reporting ones)
    decision: Decision

    def votes(self) -> list[Vote]:
        return votes_of(self.analyses, self.ratings)


def votes_of(analyses: Sequence[AnalysisRecord], ratings: Mapping[str, Sequence[MetaRecord]]) -> list[Vote]:
    """Records -> votes: anything not parsed OK (call errors included) becomes None."""
    return [Vote(a.score if a.ok else None,
                 tuple(r.rating if r.ok else None for r in ratings.get(a.id, ())))
            for a in analyses]


class _NullRecorder:
    def analysis(self, problem: str, record: AnalysisRecord) -> None: ...
    def meta(self, problem: str, record: MetaRecord) -> None: ...


def _proof_record(item: LabelItem, proof_id: str | None = None) -> ProofRecord:
    return ProofRecord(id=proof_id or item.id, problem=item.problem, status=ParseStatus.OK, raw=item.proof,
                       solution=item.proof)


async def label_one(model: Model, item: LabelItem, *, n: int, rule: LabelRule, start: int = 0,
                    verify_sampling: Sampling = Sampling(), meta_sampling: Sampling = Sampling(),
                    templates: Templates | None = None, recorder: Any = None,
                    proof_id: str | None = None, evidence: ProblemView | None = None) -> LabelledProof:
    """Verify one proof n times (sample indices start..start+n-1), meta-verify each analysis
    that reports issues m times, record everything, decide. `evidence` (a pack's executable
    evidence, search.base.ProblemView) gives the problem as the proof's verifiers see it.

    The ratings of the analysis with sample index j use sample indices j*m..j*m+m-1 of their
    prompt, so two analyses with the same text still get m independent ratings each."""
    recorder = recorder or _NullRecorder()
    proof = _proof_record(item, proof_id)
    shown = item.problem if evidence is None else await evidence(item.problem, proof)
    v = await verify(model, shown, proof, sampling=verify_sampling, n=n, start=start, templates=templates)
    for a in v.analyses:
        recorder.analysis(item.problem, a)

    async def rate(j: int, a: AnalysisRecord) -> tuple[str, list[MetaRecord]]:
        records = await meta_verify(model, shown, proof, a, sampling=meta_sampling, m=rule.m,
                                    start=j * rule.m, templates=templates)
        for r in records:
            recorder.meta(item.problem, r)
        return a.id, records

    to_rate = [rate(start + i, a) for i, a in enumerate(v.analyses) if a.ok and a.score in ISSUE_SCORES]
    ratings = dict(await asyncio.gather(*to_rate))
    return LabelledProof(item, v.analyses, ratings, decide(votes_of(v.analyses, ratings), rule))


def verify_starts(items: Sequence[LabelItem], n: int) -> list[int]:
    """The first verification sample index per item: 0, or d*n for the d-th repeat of the same
    (problem, proof), so repeated rows get independent analyses instead of shared calls."""
    seen: Counter = Counter()
    starts = []
    for item in items:
        starts.append(seen[(item.problem, item.proof)] * n)
        seen[(item.problem, item.proof)] += 1
    return starts


async def label_items(model: Model, items: Sequence[LabelItem], *, n: int, rule: LabelRule,
                      verify_sampling: Sampling = Sampling(), meta_sampling: Sampling = Sampling(),
                      templates: Templates | None = None, recorder: Any = None,
                      evidence: ProblemView | None = None) -> list[LabelledProof]:
    """Label every item concurrently (the Model caps requests per endpoint); input order kept."""
    if n < 1:
        raise UserInputError(f"n must be at least 1 (got {n})")
    starts = verify_starts(items, n)
    return list(await asyncio.gather(*(
        label_one(model, item, n=n, rule=rule, start=s, verify_sampling=verify_sampling,
                  meta_sampling=meta_sampling, templates=templates, recorder=recorder, evidence=evidence)
        for item, s in zip(items, starts))))


# ---------------------------------------------------------------------------- output rows


def _iso(ts: float | datetime | None) -> str | None:
    if ts is None:
        return None
    dt = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, timezone.utc)
    return dt.isoformat()


def result_row(lp: LabelledProof, rule: LabelRule, n: int, provenance: Mapping[str, Any],
               call_times: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One output row: problem, proof, label, status, analyses and provenance."""
    call_times = call_times or {}
    analyses = []
    for a, vote, kind in zip(lp.analyses, lp.votes(), lp.decision.validity):
        records = lp.ratings.get(a.id, [])
        yes, failed = confirmations(vote, rule) if kind not in (Validity.FAILED, Validity.NO_ISSUE) else (0, 0)
        analyses.append({
            "id": a.id, "status": a.status.value, "cause": a.cause, "score": a.score, "validity": kind.value,
            "valid": kind is Validity.VALID, "confirmations": yes, "failed_ratings": failed,
            "issues": list(a.issues), "text": a.analysis,
            "meta": [{"id": r.id, "status": r.status.value, "cause": r.cause, "rating": r.rating,
                      "confirms": r.ok and r.rating is not None and r.rating >= rule.confirm_at}
                     for r in records]})
    keys = [a.id for a in lp.analyses] + [r.id for rs in lp.ratings.values() for r in rs]
    times = [call_times[k] for k in keys if k in call_times]
    d = lp.decision
    return {
        "id": lp.item.id, "problem": lp.item.problem, "proof": lp.item.proof,
        "score": d.score, "status": d.status.value, "reason": d.reason, "analyses": analyses,
        "provenance": {
            **provenance, "n": n, "m": rule.m, "k": rule.k, "confirm_at": rule.confirm_at,
            "quorum": rule.quorum, "undecided": rule.undecided, "lowest": rule.lowest,
            "verify_calls": [a.id for a in lp.analyses],
            "meta_calls": [r.id for rs in lp.ratings.values() for r in rs],
            "first_call_at": _iso(min(times)) if times else None,
            "last_call_at": _iso(max(times)) if times else None,
        },
        "extra": lp.item.extra,
    }


def _arrow_schema():
    import pyarrow as pa

    meta = pa.struct([("id", pa.string()), ("status", pa.string()), ("cause", pa.string()),
                      ("rating", pa.float64()), ("confirms", pa.bool_())])
    analysis = pa.struct([("id", pa.string()), ("status", pa.string()), ("cause", pa.string()),
                          ("score", pa.float64()), ("validity", pa.string()), ("valid", pa.bool_()),
                          ("confirmations", pa.int64()), ("failed_ratings", pa.int64()),
                          ("issues", pa.list_(pa.string())), ("text", pa.string()), ("meta", pa.list_(meta))])
    provenance = pa.struct([
        ("run_id", pa.string()), ("model", pa.string()), ("provider", pa.string()), ("labelled_at", pa.string()),
        ("n", pa.int64()), ("m", pa.int64()), ("k", pa.int64()), ("confirm_at", pa.float64()),
        ("quorum", pa.float64()), ("undecided", pa.string()), ("lowest", pa.string()), ("verify_calls", pa.list_(pa.string())),
        ("meta_calls", pa.list_(pa.string())), ("first_call_at", pa.string()), ("last_call_at", pa.string())])
    return pa.schema([("id", pa.string()), ("problem", pa.string()), ("proof", pa.string()),
                      ("score", pa.float64()), ("status", pa.string()), ("reason", pa.string()),
                      ("analyses", pa.list_(analysis)), ("provenance", provenance),
                      ("extra", pa.string())])  # the input's other columns as a JSON object


def write_jsonl(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    tmp = Path(str(path) + ".tmp")  # written whole, then renamed: never a half file
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    tmp.replace(path)


def write_parquet(rows: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """The same rows with a fixed schema (so all-null columns keep their types); `extra` is
    stored as JSON text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema()
    names = {f.name for f in schema.field("provenance").type}
    flat = [{**row, "extra": json.dumps(row.get("extra") or {}, ensure_ascii=False, default=str),
             "provenance": {k: v for k, v in row["provenance"].items() if k in names}} for row in rows]
    tmp = Path(str(path) + ".tmp")
    pq.write_table(pa.Table.from_pylist(flat, schema=schema), tmp)
    tmp.replace(path)
