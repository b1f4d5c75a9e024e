"""`proofloop bench report RUN -o DIR`: a run's metrics as Markdown and as one self-contained
HTML file (plots embedded as base64 PNG), plus metrics.json and the plots as PNG files.

Plots (matplotlib, Agg, no display needed): score histograms per grader; calibration of each
automatic grader against human grades (when the run has human grades); points percentage by
category (or level / set) with bootstrap intervals; best@k by self score when every proof was
graded. Both documents are built from one list of sections, so they always say the same.

    >>> from proofloop.store import Store
    >>> from proofloop.models.factory import ModelSettings
    >>> from proofloop.bench.runs import create_grade_run
    >>> store = Store(":memory:")
    >>> run = create_grade_run(store, ModelSettings(provider="sim"), grader="human", rows=[
    ...     {"id": "a", "statement": "P", "proof": "Q", "human_grade": 7, "category": "Algebra"},
    ...     {"id": "b", "statement": "R", "proof": "S", "human_grade": 1, "category": "Geometry"}])
    >>> r = build_report(store, run, n_resamples=50)
    >>> sorted(r.figures), r.markdown.splitlines()[0] == f"# proofloop benchmark report: run {run}"
    (['by_category', 'histogram'], True)
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proofloop.bench.runs import run_metrics
from proofloop.errors import UserInputError
from proofloop.extras import require
from proofloop.store import Store

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**kw: Any) -> "Figure":
    """A matplotlib Figure on the Agg backend (never a display: servers and CI write reports);
    matplotlib is imported here, on first use, so the bench commands load without it."""
    require("matplotlib", "bench", "proofloop bench report").use("Agg")  # before anything draws
    return require("matplotlib.figure", "bench", "proofloop bench report").Figure(**kw)

__all__ = ["Report", "build_report", "write_report"]

Table = tuple[list[str], list[list[str]]]


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (figure name, caption)


@dataclass
class Report:
    run_id: str
    metrics: dict[str, Any]
    figures: dict[str, bytes]  # name -> PNG
    sections: list[Section]
    markdown: str = ""
    html: str = ""


# ---------------------------------------------------------------------------- formatting


def _f(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _with_ci(d: dict[str, Any] | None, digits: int = 3) -> str:
    if not d or d.get("estimate") is None:
        return "-"
    return f"{_f(d['estimate'], digits)} [{_f(d.get('low'), digits)}, {_f(d.get('high'), digits)}]"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


# ---------------------------------------------------------------------------- plots


def _histograms(m: dict[str, Any]) -> bytes | None:
    graders = [(g, [s["score"] for s in v["scores"]]) for g, v in m["graders"].items() if v["scores"]]
    if not graders:
        return None
    fig = new_figure(figsize=(4.2 * len(graders), 3.2))
    for i, (name, scores) in enumerate(graders):
        ax = fig.add_subplot(1, len(graders), i + 1)
        ax.hist(scores, bins=[k / 14 for k in range(15)], range=(0, 1), color="#4477aa", edgecolor="white")
        ax.set_title(f"{name} (n={len(scores)})")
        ax.set_xlabel("normalised score")
        ax.set_xlim(0, 1)
        if i == 0:
            ax.set_ylabel("proofs")
    return _png(fig)


def _calibration(m: dict[str, Any]) -> bytes | None:
    reps = [(g, rep) for g, rep in m["agreement"].items() if rep.get("pairs")]
    if not reps:
        return None
    fig = new_figure(figsize=(4.4 * len(reps), 4.0))
    for i, (name, rep) in enumerate(reps):
        ax = fig.add_subplot(1, len(reps), i + 1)
        pred = [p["pred"] for p in rep["pairs"]]
        human = [p["human"] for p in rep["pairs"]]
        # A small deterministic jitter so that identical (pred, human) pairs stay visible.
        jit = [((k * 7919) % 13 - 6) / 300 for k in range(len(pred))]
        ax.scatter([p + j for p, j in zip(pred, jit)], [h - j for h, j in zip(human, jit)], s=14, alpha=0.6,
                   color="#4477aa", label="proofs")
        edges = [0, 0.2, 0.4, 0.6, 0.8, 1.0001]
        xs, ys = [], []
        for lo, hi in zip(edges, edges[1:]):
            sel = [h for p, h in zip(pred, human) if lo <= p < hi]
            if sel:
                xs.append(sum(p for p in pred if lo <= p < hi) / len(sel))
                ys.append(sum(sel) / len(sel))
        ax.plot(xs, ys, "o-", color="#cc6677", label="mean human score per bin")
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
        ax.axvline(rep["threshold"], color="#999933", linewidth=1, linestyle=":", label=f"threshold {rep['threshold']:g}")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(f"{name} score")
        ax.set_ylabel("human grade (normalised)")
        ax.set_title(f"{name} vs human (n={len(pred)})")
        ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def _by_group(m: dict[str, Any], key: str) -> bytes | None:
    graders = [(g, v[f"by_{key}"]) for g, v in m["graders"].items() if v.get(f"by_{key}")]
    if not graders:
        return None
    groups = sorted({name for _, table in graders for name in table})
    fig = new_figure(figsize=(max(5.0, 1.3 * len(groups) * len(graders)), 3.6))
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(graders)
    for i, (name, table) in enumerate(graders):
        xs, ys, lo, hi = [], [], [], []
        for j, g in enumerate(groups):
            row = table.get(g)
            if row is None or row["percent"] is None:
                continue
            xs.append(j + (i - (len(graders) - 1) / 2) * width)
            ys.append(row["percent"])
            lo.append(row["percent"] - (row["low"] if row.get("low") is not None else row["percent"]))
            hi.append((row["high"] if row.get("high") is not None else row["percent"]) - row["percent"])
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=name)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=20, ha="right")
    ax.set_ylabel("points / maximum (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"score by {key} (95% bootstrap CI)")
    ax.legend(fontsize=8)
    return _png(fig)


def _best_at_k_plot(m: dict[str, Any]) -> bytes | None:
    if not m["best_at_k"]:
        return None
    fig = new_figure(figsize=(5.0, 3.4))
    ax = fig.add_subplot(1, 1, 1)
    for name, bk in m["best_at_k"].items():
        ks = sorted(int(k) for k in bk["best_at_k"])
        est = [bk["best_at_k"][str(k)]["estimate"] for k in ks]
        lo = [bk["best_at_k"][str(k)]["low"] if bk["best_at_k"][str(k)]["low"] is not None else e for k, e in zip(ks, est)]
        hi = [bk["best_at_k"][str(k)]["high"] if bk["best_at_k"][str(k)]["high"] is not None else e for k, e in zip(ks, est)]
        ax.plot(ks, est, "o-", label=f"graded by {name}")
        ax.fill_between(ks, lo, hi, alpha=0.2)
    ax.set_xlabel("k (proofs sampled; the highest self score is kept)")
    ax.set_ylabel("mean score")
    ax.set_title("best@k by self score")
    ax.legend(fontsize=8)
    return _png(fig)


# ---------------------------------------------------------------------------- sections


def _sections(store: Store, run_id: str, m: dict[str, Any], figures: dict[str, bytes]) -> list[Section]:
    run = store.get_run(run_id)
    assert run is not None
    parts = [_overview(run, m), _scores(m, figures), *_by_groups(m, figures), _best_at_k_section(m, figures),
             _agreement_section(m, figures), _not_graded(m)]
    return [section for section in parts if section is not None]


def _overview(run: Any, m: dict[str, Any]) -> Section:
    cfg = run.config
    overview = Section("Run")
    rows = [["kind", run.kind], ["status", run.status.value], ["created", f"{run.created_at:%Y-%m-%d %H:%M:%S} UTC"]]
    if cfg.get("dataset"):
        rows.append(["dataset", str(cfg["dataset"])])
    if cfg.get("source"):
        rows.append(["proofs from", ", ".join(f"{k}={v}" for k, v in cfg["source"].items() if v is not None)])
    if cfg.get("strategy"):
        rows.append(["strategy", f"{cfg['strategy']} {json.dumps(cfg.get('options') or {})}"])
    g = cfg.get("grader") or {}
    if g:
        rows.append(["grader", f"{g.get('name')} (n={g.get('n')})"])
    model = cfg.get("model") or {}
    if g.get("name") != "human":
        rows.append(["model", f"{model.get('provider')}: {model.get('model') or 'default'}"
                     + (f" at {model['base_url']}" if model.get("base_url") else "")])
    rows.append(["graded items", str(m["items"])])
    overview.tables.append((["", ""], rows))
    overview.text.append(f"Intervals: {m['bootstrap']['method']}, {m['bootstrap']['n_resamples']} resamples, "
                         f"seed {m['bootstrap']['seed']}, 95% confidence. Scores are normalised to [0, 1]; "
                         "the percentage is points over the maximum (the IMO-ProofBench figure).")
    return overview


def _scores(m: dict[str, Any], figures: dict[str, bytes]) -> Section:
    scores = Section("Scores")
    rows = []
    for name, v in m["graders"].items():
        rows.append([name, f"{v['graded']}/{m['items']}", _with_ci(v["mean_score"]), _with_ci(v["percent"], 1)])
    scores.tables.append((["grader", "graded", "mean score [95% CI]", "percent [95% CI]"], rows))
    if "histogram" in figures:
        scores.figures.append(("histogram", "Score histograms per grader"))
    return scores


def _by_groups(m: dict[str, Any], figures: dict[str, bytes]) -> list[Section]:
    sections = []
    for key in ("category", "level", "set"):
        tables = [(name, v[f"by_{key}"]) for name, v in m["graders"].items() if v.get(f"by_{key}")]
        if not tables:
            continue
        sec = Section(f"By {key}")
        rows = [[name, group, str(r["n"]), f"{r['points']:.1f}/{r['max_points']:.0f}",
                 f"{_f(r['percent'], 1)} [{_f(r.get('low'), 1)}, {_f(r.get('high'), 1)}]"]
                for name, table in tables for group, r in table.items()]
        sec.tables.append((["grader", key, "n", "points", "percent [95% CI]"], rows))
        if f"by_{key}" in figures:
            sec.figures.append((f"by_{key}", f"Points percentage by {key}"))
        sections.append(sec)
    return sections


def _best_at_k_section(m: dict[str, Any], figures: dict[str, bytes]) -> Section | None:
    if not m["best_at_k"]:
        return None
    sec = Section("pass@1 and best@k by self score")
    rows = []
    for name, bk in m["best_at_k"].items():
        rows.append([name, "pass@1", _with_ci(bk["pass_at_1"])])
        rows += [[name, f"best@{k}", _with_ci(iv)] for k, iv in bk["best_at_k"].items()]
    sec.tables.append((["grader", "metric", "estimate [95% CI]"], rows))
    sec.text.append(f"Over {next(iter(m['best_at_k'].values()))['problems']} problems; best@k is the expected "
                    "grade of the proof with the highest self score among k of the sampled proofs "
                    "(unbiased over all subsets, ties averaged).")
    if "best_at_k" in figures:
        sec.figures.append(("best_at_k", "best@k by self score"))
    return sec


def _agreement_section(m: dict[str, Any], figures: dict[str, bytes]) -> Section | None:
    if not m["agreement"]:
        return None
    sec = Section("Agreement with human grades")
    rows = []
    for name, rep in m["agreement"].items():
        for scope, s in [("overall", rep["overall"])] + list(rep["groups"].items()):
            c = s["confusion"]
            ci = s["ci"]
            rows.append([name, scope, str(s["n"]), f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}",
                         _with_ci({"estimate": s["precision"], **ci["precision"]}, 2),
                         _with_ci({"estimate": s["recall"], **ci["recall"]}, 2),
                         _with_ci({"estimate": s["accuracy"], **ci["accuracy"]}, 2),
                         _f(s["pearson"], 2), _f(s["kappa_3level"], 2)])
    sec.tables.append((["grader", "scope", "n", "TP/FP/FN/TN", "precision", "recall", "accuracy",
                        "pearson r", "kappa (3 levels)"], rows))
    rep0 = next(iter(m["agreement"].values()))
    sec.text.append(f"Accepted: {rep0['rules']['predicted_accept']}; experts: {rep0['rules']['human_accept']}.")
    for name, rep in m["agreement"].items():
        if rep["false_accepts"]:
            sec.text.append(f"{name} false accepts: " + ", ".join(
                f"{x['id']} ({_f(x['pred'], 2)} vs {_f(x['human'], 2)})" for x in rep["false_accepts"]))
        if rep["false_rejects"]:
            sec.text.append(f"{name} false rejects: " + ", ".join(
                f"{x['id']} ({_f(x['pred'], 2)} vs {_f(x['human'], 2)})" for x in rep["false_rejects"]))
    if "calibration" in figures:
        sec.figures.append(("calibration", "Calibration: automatic score against the human grade"))
    return sec


def _not_graded(m: dict[str, Any]) -> Section | None:
    missing = [(name, u) for name, v in m["graders"].items() for u in v["ungraded"]]
    if not missing:
        return None
    sec = Section("Not graded")
    sec.text.append("These items count in no metric above; each has its cause.")
    sec.tables.append((["grader", "problem", "proof", "cause"],
                       [[name, str(u["problem_id"]), str(u["proof_id"] or "-")[:16], u["cause"][:300]]
                        for name, u in missing]))
    return sec


# ---------------------------------------------------------------------------- rendering


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def _markdown(run_id: str, sections: list[Section]) -> str:
    out = [f"# proofloop benchmark report: run {run_id}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        for header, rows in sec.tables:
            if header == ["", ""]:
                out += ["| | |", "|---|---|"]
            else:
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        for t in sec.text:
            out += [t, ""]
        for name, caption in sec.figures:
            out += [f"![{caption}]({name}.png)", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%;display:block;margin:.8em 0}figcaption{color:#555;font-size:.9em}"""


def _html(run_id: str, sections: list[Section], figures: dict[str, bytes]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>proofloop report {e(run_id)}</title><style>{_CSS}</style></head><body>",
           f"<h1>proofloop benchmark report: run {e(run_id)}</h1>"]
    for sec in sections:
        out.append(f"<h2>{e(sec.title)}</h2>")
        for header, rows in sec.tables:
            out.append("<table>")
            if header != ["", ""]:
                out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows]
            out.append("</table>")
        out += [f"<p>{e(t)}</p>" for t in sec.text]
        for name, caption in sec.figures:
            data = base64.b64encode(figures[name]).decode()
            out.append(f'<figure><img id="fig-{e(name)}" class="plot" alt="{e(caption)}" '
                       f'src="data:image/png;base64,{data}"><figcaption>{e(caption)}</figcaption></figure>')
    out.append("</body></html>")
    return "\n".join(out)


def _no_grades(run: Any, m: dict[str, Any]) -> str:
    """Why a run with nothing graded gets no report (a table of dashes would look like a result)."""
    status = run.status.value + (f": {run.error}" if run.error else "")
    if run.status.value in ("running", "interrupted", "failed"):
        return f"run {run.id} has no grades to report (status {status}); `proofloop resume {run.id}` finishes it"
    causes = [u["cause"] for v in m["graders"].values() for u in v["ungraded"]]
    why = f"e.g. {causes[0][:200]}" if causes else "it has no proofs to grade"
    return f"run {run.id} has no grades to report (status {status}): every grade failed, {why}"


def build_report(store: Store, run_id: str, *, n_resamples: int = 2000, seed: int = 0,
                 threshold: float = 0.75) -> Report:
    """Metrics, plots and both documents of a run, in memory."""
    run = store.get_run(run_id)
    if run is None:
        raise UserInputError(f"no run {run_id!r} in the run store")
    if run.kind not in ("bench", "bench-grade"):
        raise UserInputError(f"run {run_id} is a {run.kind} run; bench report takes bench and bench-grade runs")
    m = run_metrics(store, run_id, n_resamples=n_resamples, seed=seed, threshold=threshold)
    if not any(v["graded"] for v in m["graders"].values()):
        raise UserInputError(_no_grades(run, m))
    figures: dict[str, bytes] = {}
    makers: list[tuple[str, Any]] = [("histogram", lambda: _histograms(m)), ("calibration", lambda: _calibration(m)),
                                     ("best_at_k", lambda: _best_at_k_plot(m))]
    makers += [(f"by_{key}", lambda key=key: _by_group(m, key)) for key in ("category", "level", "set")]
    for name, make in makers:
        png = make()
        if png is not None:
            figures[name] = png
    sections = _sections(store, run_id, m, figures)
    r = Report(run_id, m, figures, sections)
    r.markdown = _markdown(run_id, sections)
    r.html = _html(run_id, sections, figures)
    return r


def write_report(store: Store, run_id: str, out_dir: str | Path, **options: Any) -> dict[str, Any]:
    """Write report.md (+ one PNG per plot), report.html (self-contained) and metrics.json."""
    r = build_report(store, run_id, **options)
    d = Path(out_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
        (d / "report.md").write_text(r.markdown, encoding="utf-8")
        (d / "report.html").write_text(r.html, encoding="utf-8")
        (d / "metrics.json").write_text(json.dumps(r.metrics, indent=1, default=str), encoding="utf-8")
        for name, png in r.figures.items():
            (d / f"{name}.png").write_bytes(png)
    except OSError as e:
        raise UserInputError(f"cannot write the report to {d}: {e}") from None
    return {"run_id": run_id, "markdown": str(d / "report.md"), "html": str(d / "report.html"),
            "metrics": str(d / "metrics.json"), "figures": sorted(r.figures)}
