"""Typed strategy options: every bad value is a one-line UserInputError that names the key,
what was expected and the valid keys, raised before any run exists (make_strategy)."""

from __future__ import annotations

import json

import pytest

from proofloop.errors import UserInputError
from proofloop.search import STRATEGIES, make_strategy, options_help, validate_options
from proofloop.search.options import SPECS


def cli_value(text: str):
    """What `-o key=text` hands over: JSON-decoded, else the raw string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


BAD = [
    # strategy, key, typed value, what the message must say
    ("pool", "initial", "2.5", "expected an integer >= 1"),
    ("pool", "initial", "0", "expected an integer >= 1"),
    ("pool", "initial", "true", "expected an integer >= 1"),
    ("pool", "rounds", "abc", "expected an integer >= 0"),
    ("pool", "rounds", "-1", "expected an integer >= 0"),
    ("pool", "stop_early", "maybe", "expected true or false"),
    ("pool", "stop_early", "1", "expected true or false"),
    ("pool", "keep_truncated", "yes", "expected true or false"),
    ("pool", "preset", "fast", "expected one of paper, release"),
    ("pool", "selection", "random", "expected one of paper, release"),
    ("pool", "budget_cost", "0", "expected a number > 0"),
    ("pool", "budget_cost", "cheap", "expected a number > 0"),
    ("pool", "max_inflight", "0", "expected an integer >= 1"),
    ("pool", "verifications", "[4]", "expected an integer >= 1"),
    ("adaptive", "stages", "[4, 0]", "expected a list of integers"),
    ("adaptive", "stages", "four", "expected a list of integers"),
    ("adaptive", "z", "0", "expected a number > 0"),
    ("adaptive", "window", "0", "expected an integer >= 1"),
    ("single", "k", "0", "expected an integer >= 1"),
    ("single", "k", "null", "expected an integer >= 1"),
    ("sequential", "attempts", "0", "expected an integer >= 1"),
    ("sequential", "threads", "-2", "expected an integer >= 1"),
    ("sequential", "threads", "2.5", "expected an integer >= 1"),
]


@pytest.mark.parametrize("strategy,key,text,expected", BAD)
def test_bad_values_are_named_with_the_valid_keys(strategy, key, text, expected):
    with pytest.raises(UserInputError) as e:
        make_strategy(strategy, **{key: cli_value(text)})
    message = str(e.value)
    assert message.startswith(f"bad option {key}={text}: expected ")
    assert expected in message and "\n" not in message
    assert f"valid keys for {strategy}: " in message
    assert all(f"{k} (" in message for k in SPECS[strategy])


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(UserInputError, match=r"unknown option 'intial' for pool; valid keys for pool: preset"):
        make_strategy("pool", intial=3)
    with pytest.raises(UserInputError, match="unknown strategy 'best'"):
        make_strategy("best")


@pytest.mark.parametrize("options,expected", [
    (dict(verifications=16, pass_min_valid=17), "pass_min_valid must be between 1 and verifications (16)"),
    (dict(pass_min_valid=65), "pass_min_valid must be between 1 and verifications (64)"),  # the paper preset's 64
    (dict(preset="release", verifications=4, pass_min_valid=5), "verifications (4)"),
])
def test_cross_key_rules(options, expected):
    with pytest.raises(UserInputError) as e:
        make_strategy("pool", **options)
    assert expected in str(e.value) and "valid keys for pool:" in str(e.value)


@pytest.mark.parametrize("strategy,options,attr,value", [
    ("pool", {"initial": 2.0}, "initial", 2),  # an integral float is an integer
    ("pool", {"budget_cost": 1}, "budget_cost", 1),
    ("pool", {"preset": None, "initial": 3}, "initial", 3),
    ("pool", {"priority": None}, "priority", None),
    ("adaptive", {"stages": "2,4"}, "stages", [2, 4]),
    ("adaptive", {"stages": [2, 4]}, "stages", [2, 4]),
    ("sequential", {"threads": 2, "keep_truncated": True}, "keep_truncated", True),
])
def test_good_values_are_normalised(strategy, options, attr, value):
    assert validate_options(strategy, options)[attr] == value
    assert getattr(make_strategy(strategy, **options), attr) == value


def test_pool_params_get_the_typed_values():
    params = make_strategy("pool", **{k: cli_value(v) for k, v in
                                      [("initial", "4"), ("rounds", "3"), ("stop_early", "true")]}).params
    assert (params.initial, params.rounds, params.top_k) == (4, 3, 64)


def test_every_dataclass_option_has_a_spec():
    for name, cls in STRATEGIES.items():
        fields = {f for f in cls.__dataclass_fields__ if f != "name"}
        assert fields == set(SPECS[name]), name


def test_options_help_lists_keys_defaults_and_presets():
    text = options_help()
    for name in STRATEGIES:
        assert f"{name}:" in text
    assert "initial" in text and "int >= 1" in text and "default 4" in text  # single's k
    paper = next(line for line in text.splitlines() if line.strip().startswith("paper "))
    assert "64 proofs x 64 verifications" in paper and "16 refinement rounds" in paper and "[default]" in paper
    release = next(line for line in text.splitlines() if line.strip().startswith("release "))
    assert "initial + 15 rounds" in release


@pytest.mark.parametrize("args,needle", [
    (["--strategy", "pool", "-o", "initial=2.5"], "bad option initial=2.5: expected an integer >= 1"),
    (["--strategy", "pool", "-o", "rounds=abc"], "bad option rounds=abc"),
    (["--strategy", "pool", "-o", "stop_early=maybe"], "expected true or false"),
    (["--strategy", "pool", "-o", "verifications=16", "-o", "pass_min_valid=17"], "pass_min_valid must be"),
    (["--strategy", "sequential", "--threads", "-2"], "Invalid value for '--threads'"),
])
def test_cli_rejects_bad_options_before_a_run_exists(tmp_path, args, needle):
    from proofloop.store import Store
    from support.cli import cli_env, run_cli

    problem = tmp_path / "p.md"
    problem.write_text("Prove that 1 + 1 = 2.\n")
    r = run_cli(["prove", str(problem), *args], cli_env(tmp_path / "db", "http://127.0.0.1:9/v1"))
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines[-1].startswith("proofloop: error:") and needle in lines[-1], lines[-1]
    assert not (tmp_path / "db").exists() or Store(tmp_path / "db").list_runs() == []
