"""Domain packs (issue 12): the registry, the math default left unchanged, a third-party pack
installed as its own distribution, the law pack on the real LegalBench files, pack metrics."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from proofloop.errors import UserInputError
from proofloop.packs import get_pack, pack_names, with_evidence
from proofloop.packs.law import TASKS
from proofloop.packs.metrics import agreement, cohen_kappa_binary, invented_issue_rate
from proofloop.protocol import (FINAL_SCORE_PHRASE, META_FINAL_PHRASE, Templates, detect_role,
                                generation_messages, meta_verification_messages, refinement_messages,
                                verification_messages)
from support.cli import cli_env, run_cli, run_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "legalbench").is_dir(), reason="../shared/data/legalbench not present")


# ---------------------------------------------------------------------------- registry


def test_the_builtin_packs_are_found_and_math_is_todays_wording():
    assert {"math", "law", "code"} <= set(pack_names())
    assert get_pack(None).name == "math" and get_pack("math").templates is None
    with pytest.raises(UserInputError, match="unknown pack 'nope'; installed packs: "):
        get_pack("nope")


def test_math_pack_sends_the_same_prompts_and_stores_the_same_config():
    from proofloop.cli.options import ModelOptions

    plain, math = ModelOptions(provider="sim").setup(), ModelOptions(provider="sim", pack="math").setup()
    assert plain.templates is None and math.templates is None and math.pack == "math"
    assert plain.resolved().config() == math.resolved().config()
    assert "pack" not in math.resolved().config()
    assert verification_messages("P", "Q", math.templates) == verification_messages("P", "Q")


@pytest.mark.parametrize("name", ["law", "code"])
def test_a_packs_templates_keep_the_output_contract(name):
    t = get_pack(name).templates
    assert isinstance(t, Templates)
    rendered = {"generate": generation_messages("P", t), "verify": verification_messages("P", "Q", t),
                "meta_verify": meta_verification_messages("P", "Q", "A", t),
                "refine": refinement_messages("P", [("Q", ["A"])], t)}
    assert {role: detect_role(msgs) for role, msgs in rendered.items()} == {r: r for r in rendered}
    assert FINAL_SCORE_PHRASE in t.verify and FINAL_SCORE_PHRASE in t.generate
    assert META_FINAL_PHRASE in t.meta_verify


def test_the_pack_of_a_run_is_stored_for_resume():
    from proofloop.cli.options import ModelOptions
    from proofloop.runs import ModelSetup

    config = ModelOptions(provider="sim", pack="law").setup().resolved().config()
    assert config["pack"] == "law"
    back = ModelSetup.from_config(config)
    assert back.pack == "law" and back.templates == get_pack("law").templates


# ---------------------------------------------------------------------------- a third-party pack

TOY = '''
from proofloop.packs import IssueClass, Pack, Rubric
from proofloop.protocol import Templates
from dataclasses import replace

_default = Templates.default()
pack = Pack(name="toy", description="a pack from another distribution",
            rubric=Rubric(levels={1.0: "fine", 0.5: "so so", 0.0: "bad"}, issues=(IssueClass("toy-issue", "x"),)),
            templates=replace(_default, verify="TOY VERIFIER WORDING\\n" + _default.verify))
'''


def install_toy_distribution(root: Path) -> Path:
    """A distribution `proofloop-toy` with an entry point in `proofloop.packs`, as pip leaves it."""
    site = root / "site"
    (site / "proofloop_toy").mkdir(parents=True)
    (site / "proofloop_toy" / "__init__.py").write_text(TOY)
    info = site / "proofloop_toy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: proofloop-toy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[proofloop.packs]\ntoy = proofloop_toy:pack\n")
    return site


def test_a_pack_from_another_distribution_is_listed_and_used_by_verify(tmp_path: Path):
    site = install_toy_distribution(tmp_path)
    src = Path(__file__).resolve().parents[1] / "src"
    env = cli_env(tmp_path / "runs.db", PYTHONPATH=f"{site}:{src}")
    listed = run_json(["packs", "list"], env)
    assert {r["name"]: r["source"] for r in listed}["toy"] == "proofloop_toy:pack"
    shown = run_json(["packs", "show", "toy"], env)
    assert shown["issue_classes"] == {"toy-issue": "x"} and shown["templates"] == "own"
    (tmp_path / "p.md").write_text("Prove that 1 + 1 = 2.")
    (tmp_path / "f.md").write_text("By the definition of 2 as the successor of 1.")
    out = run_json(["verify", "--provider", "sim", "--pack", "toy", "--problem", str(tmp_path / "p.md"),
                    "--proof", str(tmp_path / "f.md"), "-n", "2", "--seed", "3"], env)
    assert out["n"] == 2
    with closing(sqlite3.connect(tmp_path / "runs.db")) as con:
        config = json.loads(con.execute("select config from runs").fetchone()[0])
    assert config["pack"] == "toy" and config["templates"]["verify"].startswith("TOY VERIFIER WORDING")
    bad = run_cli(["verify", "--provider", "sim", "--pack", "toyy", "--problem", str(tmp_path / "p.md"),
                   "--proof", str(tmp_path / "f.md")], env)
    assert bad.returncode == 2 and "unknown pack 'toyy'" in bad.stderr and "toy" in bad.stderr


# ---------------------------------------------------------------------------- law


@needs_data
@pytest.mark.parametrize("task,items", [("hearsay", 95), ("personal_jurisdiction", 50)])
def test_law_loader_reads_the_legalbench_files(task, items):
    rows = get_pack("law").load(task, DATA)
    assert len(rows) == 2 * items
    by_item: dict[str, list[dict]] = {}
    for r in rows:
        by_item.setdefault(r["problem_id"], []).append(r)
    assert len(by_item) == items
    for pair in by_item.values():
        right = [r for r in pair if r["human_grade"] == 1.0]
        assert len(right) == 1 and right[0]["proof"].endswith(f"Conclusion: {right[0]['gold']}.")
        assert pair[0]["statement"].endswith(TASKS[task]["question"])
    golds = {pair[0]["gold"] for pair in by_item.values()}
    assert golds == {"Yes", "No"}
    # the same folder given as legalbench/ itself
    assert get_pack("law").load(task, DATA / "legalbench") == rows


def test_law_loader_says_what_is_missing(tmp_path: Path):
    with pytest.raises(UserInputError, match="no LegalBench hearsay/test.tsv"):
        get_pack("law").load("hearsay", tmp_path)
    with pytest.raises(UserInputError, match="has no data set 'contracts'"):
        get_pack("law").load("contracts", tmp_path)


@needs_data
def test_law_bench_reports_the_pack_metrics(tmp_path: Path):
    env = cli_env(tmp_path / "runs.db")
    out = run_json(["bench", "pack", "--pack", "law", "--dataset", "personal_jurisdiction", "--data-dir", str(DATA),
                    "--provider", "sim", "-n", "2", "--limit", "8", "--seed", "1"], env)
    pm = out["pack_metrics"]
    assert pm["pack"] == "law" and pm["overall"]["n"] == 8 and list(pm["sets"]) == ["personal_jurisdiction"]
    o = pm["overall"]
    assert o["tp"] + o["fp"] + o["fn"] + o["tn"] == 8 and o["tp"] + o["fn"] == 4  # one right of each pair
    assert "meta" not in pm  # no --meta: no meta-verifier calls, no rate


@needs_data
def test_law_bench_with_meta_reports_the_share_of_invented_issues(tmp_path: Path):
    db = tmp_path / "runs.db"
    out = run_json(["bench", "pack", "--pack", "law", "--dataset", "personal_jurisdiction", "--data-dir", str(DATA),
                    "--provider", "sim", "-n", "2", "--limit", "8", "--seed", "1", "--meta", "2"], cli_env(db))
    with closing(sqlite3.connect(db)) as con:
        finding = con.execute("SELECT count(*) FROM verifications WHERE status = 'ok' AND score < 1").fetchone()[0]
        metas = con.execute("SELECT verification_id, rating FROM meta_verifications WHERE status = 'ok'").fetchall()
    m = out["pack_metrics"]["meta"]
    assert finding > 0 and len(metas) == 2 * finding  # every issue-reporting analysis, two ratings each
    by_analysis: dict[str, list[float]] = {}
    for vid, rating in metas:
        by_analysis.setdefault(vid, []).append(rating)
    rejected = sum(1 for rs in by_analysis.values() if rs.count(0.0) * 2 > len(rs))
    assert (m["rated"], m["rejected"], m["unrated"]) == (finding, rejected, 0)
    assert m["invented_issue_rate"] == pytest.approx(rejected / finding)


# ---------------------------------------------------------------------------- metrics


def test_agreement_by_hand():
    m = agreement([1, 1, 0.5, 0, 1, 0.75], [1, 0, 1, 0, 1, 0])
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 1, 1, 2)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["false_accept_rate"] == pytest.approx(1 / 3) and m["defect_recall"] == pytest.approx(2 / 3)
    # kappa: observed 4/6, chance (3/6)(3/6) + (3/6)(3/6) = 1/2
    assert m["kappa"] == pytest.approx((4 / 6 - 0.5) / 0.5)
    assert agreement([1, 1], [1, 1])["kappa"] is None  # one label throughout: kappa is 0/0
    with pytest.raises(ValueError):
        agreement([1], [1, 0])


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.5, 1.0]), st.sampled_from([0.0, 1.0])), min_size=1, max_size=40))
def test_agreement_properties(pairs):
    scores, labels = [s for s, _ in pairs], [h for _, h in pairs]
    m = agreement(scores, labels)
    assert m["tp"] + m["fp"] + m["fn"] + m["tn"] == len(pairs)
    if m["false_accept_rate"] is not None:
        assert m["false_accept_rate"] + m["defect_recall"] == pytest.approx(1.0)
    perfect = agreement(labels, labels)
    assert perfect["fp"] == perfect["fn"] == 0
    if 0 < sum(labels) < len(labels):
        assert perfect["kappa"] == pytest.approx(1.0)
    k = cohen_kappa_binary([s >= 1 for s in scores], [h >= 1 for h in labels])
    assert k == m["kappa"] and (k is None or -1 - 1e-9 <= k <= 1 + 1e-9)


def test_invented_issue_rate_by_hand():
    assert invented_issue_rate([]) == {"rated": 0, "rejected": 0, "invented_issue_rate": None}
    assert invented_issue_rate([False, False, True]) == {"rated": 3, "rejected": 1, "invented_issue_rate": 1 / 3}
    assert invented_issue_rate([True, True])["invented_issue_rate"] == 1.0


@given(st.lists(st.booleans(), max_size=50))
def test_invented_issue_rate_properties(verdicts):
    m = invented_issue_rate(verdicts)
    assert m["rated"] == len(verdicts) and m["rejected"] == verdicts.count(True)
    if verdicts:
        assert 0.0 <= m["invented_issue_rate"] <= 1.0
        flipped = invented_issue_rate([not v for v in verdicts])["invented_issue_rate"]
        assert m["invented_issue_rate"] + flipped == pytest.approx(1.0)


def test_no_evidence_leaves_the_problem_alone():
    assert with_evidence(get_pack("law"), "facts", "analysis") == ("facts", None)
