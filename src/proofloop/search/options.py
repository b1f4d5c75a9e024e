"""Every strategy's options, typed: what `-o key=value` may set, checked before a run exists.

Values arrive JSON-decoded (the CLI's `-o k=v` runs `json.loads` on v and keeps the raw
string when that fails), so `true`/`false` are bools, `2`/`2.5` numbers, `[4, 16]` a list
and anything else a string. `validate_options` checks each value against its key's spec and
returns the options with numbers normalised (an integral float such as 2.0 becomes 2);
cross-key rules (e.g. `pass_min_valid` cannot exceed `verifications`) are checked by the
strategy itself when search.make_strategy builds it. `options_help` renders the table.

    >>> validate_options("pool", {"initial": 8, "stop_early": True})
    {'initial': 8, 'stop_early': True}
    >>> try:
    ...     validate_options("single", {"k": 0})
    ... except UserInputError as e:
    ...     print(e)
    bad option k=0: expected an integer >= 1; valid keys for single: k (int >= 1), keep_truncated (bool)
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

from proofloop.errors import UserInputError
from proofloop.search.decisions import PRESET_HELP, PRESETS, SELECTIONS, PoolParams


@dataclass(frozen=True)
class Spec:
    """One option: its kind (int, float, bool, choice, int_list), its lower bound (numbers,
    and each item of an int_list), whether the bound is strict, its choices, whether null
    (JSON `null`: "use the default / none") is allowed, and one line of meaning."""

    kind: str
    minimum: float | None = None
    strict: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    help: str = ""

    def describe(self) -> str:
        if self.kind == "choice":
            return " | ".join(self.choices)
        text = {"int": "int", "float": "number", "bool": "bool", "int_list": "list of int"}[self.kind]
        if self.minimum is not None:
            text += f" {'>' if self.strict else '>='} {self.minimum:g}"
        return text

    def expected(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        noun = {"int": "an integer", "float": "a number", "bool": "true or false",
                "int_list": "a list of integers (e.g. [4,16,64] or 4,16,64)"}[self.kind]
        if self.minimum is not None and self.kind != "bool":
            noun += f"{' each' if self.kind == 'int_list' else ''} {'>' if self.strict else '>='} {self.minimum:g}"
        return noun + (" (or null)" if self.nullable else "")


def _int(value: Any) -> int | None:
    """An int from an int or an integral float; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _in_range(spec: Spec, x: float) -> bool:
    return spec.minimum is None or (x > spec.minimum if spec.strict else x >= spec.minimum)


def _convert(spec: Spec, value: Any) -> tuple[bool, Any]:
    """(valid, the normalised value)."""
    if value is None:
        return spec.nullable, None
    if spec.kind == "bool":
        return isinstance(value, bool), value
    if spec.kind == "choice":
        return value in spec.choices, value
    if spec.kind == "int":
        n = _int(value)
        return n is not None and _in_range(spec, n), n
    if spec.kind == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return ok and _in_range(spec, value), value
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    if not items:
        return False, None
    ints = [_int(int(x) if isinstance(x, str) and x.strip().isdigit() else x) for x in items]
    return all(n is not None and _in_range(spec, n) for n in ints), ints


# ---- the tables ---------------------------------------------------------------------------

_KEEP = Spec("bool", help="keep proofs cut at the token limit (verify, refine from, choose them)")
_POS = dict(kind="int", minimum=1)

SINGLE = {"k": Spec(**_POS, help="proofs to generate; the best self score wins"), "keep_truncated": _KEEP}
SEQUENTIAL = {"attempts": Spec(**_POS, help="proofs per thread at most (first + refinements)"),
              "threads": Spec(**_POS, help="independent threads"), "keep_truncated": _KEEP}
POOL = {
    "preset": Spec("choice", choices=tuple(PRESETS), nullable=True, help="the numbers the other keys start from"),
    "initial": Spec(**_POS, nullable=True, help="proofs generated in round 0"),
    "verifications": Spec(**_POS, nullable=True, help="verifier analyses per proof"),
    "top_k": Spec(**_POS, nullable=True, help="proofs refined per round (best by mean score)"),
    "analyses_per_prompt": Spec("int", 0, nullable=True, help="analyses shown with each proof to refine"),
    "max_per_score": Spec(**_POS, nullable=True, help="analyses per distinct score at most (null: no cap)"),
    "samples_per_prompt": Spec(**_POS, nullable=True, help="refined proofs per refinement prompt"),
    "rounds": Spec("int", 0, nullable=True, help="refinement rounds after round 0"),
    "pass_min_valid": Spec(**_POS, nullable=True,
                           help="scored analyses a proof needs to pass (<= verifications; default half)"),
    "meta": Spec("int", 0, nullable=True, help="meta-verifications per issue-finding analysis (0: off)"),
    "selection": Spec("choice", choices=SELECTIONS, nullable=True,
                      help="analysis choice rule: paper, or the released script's loop"),
    "keep_truncated": Spec("bool", nullable=True, help=_KEEP.help),
    "accept": Spec("bool", nullable=True, help="false: no proof is accepted, every round runs (benchmarks)"),
    "request_n": Spec(**_POS, nullable=True, help="samples per initial-generation request (null: one request)"),
    "max_inflight": Spec(**_POS, nullable=True, help="this problem's concurrent calls at most (null: no cap)"),
    "priority": Spec("bool", nullable=True, help="send server scheduling priorities (null: where accepted)"),
    "client_priority": Spec("bool", help="release calls to the endpoint in priority order (matters when its caps bind)"),
    "stop_early": Spec("bool", help="cancel verifications that cannot change the accepted proof"),
    "budget_tokens": Spec(**_POS, nullable=True, help="tokens this problem may spend"),
    "budget_cost": Spec("float", 0, strict=True, nullable=True, help="dollars this problem may spend"),
    "budget_wall_s": Spec("float", 0, strict=True, nullable=True, help="seconds this problem may run"),
}
ADAPTIVE = {
    **POOL,
    "stages": Spec("int_list", 1, help="cumulative analyses per verification stage"),
    "z": Spec("float", 0, strict=True, help="interval half-width in standard errors"),
    "tolerance": Spec("float", 0, help="an ambiguous proof whose interval is narrower stops"),
    "refine_min": Spec("int", 0, help="analyses a parent gets at least"),
    "window": Spec(**_POS, nullable=True, help="acceptance candidates verified at once (null: auto)"),
}

TREE = {
    "k": Spec(**_POS, help="next steps proposed per expansion"),
    "step_verifications": Spec(**_POS, help="step-verifier samples per proposed step"),
    "prune_below": Spec("float", 0, help="a step whose mean score is at most this is pruned (0: zero-scored only)"),
    "search": Spec("choice", choices=("best_first", "beam", "mcts"), help="which node to expand next"),
    "beam_width": Spec(**_POS, help="beam: nodes kept per level"),
    "c_puct": Spec("float", 0, help="mcts: weight of the prior in PUCT"),
    "max_depth": Spec(**_POS, help="steps a proof may have at most"),
    "max_expansions": Spec(**_POS, help="nodes expanded at most"),
    "verifications": Spec(**_POS, help="whole-proof verifier analyses of a finished proof"),
    "pass_min_valid": Spec(**_POS, nullable=True, help="scored analyses a finished proof needs to pass (default half)"),
    "meta": Spec("int", 0, help="meta-verifications per issue-finding analysis of a finished proof (0: off)"),
    "symbolic": Spec("bool", help="check each step with the symbolic checker; refuted steps are pruned"),
    "budget_tokens": Spec(**_POS, nullable=True, help="tokens this problem may spend"),
}

SPECS: dict[str, dict[str, Spec]] = {"single": SINGLE, "sequential": SEQUENTIAL, "pool": POOL, "adaptive": ADAPTIVE,
                                     "tree": TREE}


def valid_keys(strategy: str) -> str:
    return ", ".join(f"{k} ({s.describe()})" for k, s in SPECS[strategy].items())


def validate_options(strategy: str, options: dict[str, Any]) -> dict[str, Any]:
    """`options` checked against `strategy`'s table; UserInputError (one line, with the valid
    keys and their types) for an unknown strategy or key, or a value of the wrong type or range."""
    if strategy not in SPECS:
        raise UserInputError(f"unknown strategy {strategy!r}; choose one of {', '.join(SPECS)}")
    table, out = SPECS[strategy], {}
    for key, value in options.items():
        if key not in table:
            raise UserInputError(f"unknown option {key!r} for {strategy}; valid keys for {strategy}: "
                                 f"{valid_keys(strategy)}")
        ok, normal = _convert(table[key], value)
        if not ok:
            raise UserInputError(f"bad option {key}={_shown(value)}: expected {table[key].expected()}; "
                                 f"valid keys for {strategy}: {valid_keys(strategy)}")
        out[key] = normal
    return out


def _shown(value: Any) -> str:
    """A value as the user typed it (`2.5`, `abc`, `true`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _default(cls: type, key: str) -> str:
    f = next((f for f in fields(cls) if f.name == key), None)
    if f is None:
        return ""
    value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    if value is None and key in PoolParams.__dataclass_fields__:
        return "preset"
    return _shown(value) if not isinstance(value, list) else ",".join(map(str, value))


def options_help(classes: dict[str, type]) -> str:
    """Each strategy's keys with type, default and meaning, then the presets (text for --help)."""
    lines = []
    for strategy, table in SPECS.items():
        lines.append(f"{strategy}:" + (" (pool's keys, plus)" if strategy == "adaptive" else ""))
        for key, spec in table.items():
            if strategy == "adaptive" and key in POOL:
                continue
            lines.append(f"  {key:<20} {spec.describe():<18} default {_default(classes[strategy], key):<8} {spec.help}")
    lines.append("presets (pool, adaptive; -o preset=NAME):")
    for name, text in PRESET_HELP.items():
        lines.append(f"  {name:<20} {text}" + (" [default]" if name == "paper" else ""))
    return "\n".join(lines)
