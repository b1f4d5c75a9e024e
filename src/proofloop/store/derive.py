"""Each model output is stored once: in its llm_calls row. A proof, verification or
meta-verification row made from a call (its id is the call key) keeps only what is not text
(status, score, cause, lineage); its raw text and parsed sections are re-derived from the call
on every query. Parsing is pure and deterministic, so the records come back field for field.

A row is stored this way only when re-deriving gives back exactly what the caller passed
(the call's text is `raw`, and parsing it yields the same sections); anything else (a proof a
user typed in, a call parsed some other way) keeps its own text.

    >>> from proofloop.protocol.types import ParseStatus
    >>> out = "## Solution\\nTrivial.\\n## Self Evaluation\\nfine."
    >>> given = dict(raw=out, reasoning=None, solution="Trivial.", self_evaluation="fine.", status="ok")
    >>> stored = stored_fields("proof", given, (out, None, "stop"))
    >>> stored["raw"], stored["solution"], stored["from_call"]
    ('', None, True)
    >>> derived_fields("proof", out, None, "stop")["solution"]
    'Trivial.'
"""

from __future__ import annotations

from typing import Any

from proofloop.protocol import parse_meta_verification, parse_proof, parse_verification

PARSERS = {"proof": parse_proof, "verification": parse_verification, "meta": parse_meta_verification}
# The text fields a row of each kind takes from its output (all else is stored as given).
TEXT_FIELDS = {"proof": ("reasoning", "solution", "self_evaluation"),
               "verification": ("reasoning", "analysis", "issues"),
               "meta": ("reasoning", "analysis")}

Call = tuple[str, "str | None", "str | None"]  # (text, reasoning, finish_reason) of a stored call


def derived_fields(kind: str, text: str, reasoning: str | None, finish_reason: str | None) -> dict[str, Any]:
    """raw and the parsed text fields of an output of role `kind`."""
    parsed = PARSERS[kind](text, reasoning=reasoning, finish_reason=finish_reason)
    return {"raw": text, **{name: getattr(parsed, name) for name in TEXT_FIELDS[kind]}}


def stored_fields(kind: str, values: dict[str, Any], call: Call | None) -> dict[str, Any]:
    """The column values to store for a row given as `values`: its text fields emptied, with
    from_call set, when `call` (the stored call with the row's id) re-derives them exactly."""
    if call is not None and call[0] == values["raw"] and values["raw"]:
        derived = derived_fields(kind, *call)
        if all(_same(values.get(name), derived[name]) for name in TEXT_FIELDS[kind]):
            empty = {name: [] if name == "issues" else None for name in TEXT_FIELDS[kind]}
            return {**values, **empty, "raw": "", "from_call": True}
    return {**values, "from_call": False}


def _same(given: Any, derived: Any) -> bool:
    return list(given) == list(derived) if isinstance(derived, list) else given == derived
