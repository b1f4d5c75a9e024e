"""`bench report`: Markdown + a self-contained HTML report whose plots really render (checked in
headless Chromium when it is installed), built from a run's stored grades."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess

import pytest

from proofloop.bench.report import build_report, write_report
from proofloop.runs import ModelSetup
from proofloop.bench.runs import create_grade_run
from proofloop.errors import UserInputError
from proofloop.models.factory import ModelSettings
from proofloop.store import Store

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium installed")


def graded_run(store: Store) -> str:
    """84-style mini run: human grades plus an automatic rating (stored the way dsm2's is)."""
    rows = []
    for i in range(12):
        human = (7, 6, 1, 0)[i % 4]
        rows.append({"id": f"x{i}", "problem_id": f"P{i}", "statement": f"Problem {i}.", "proof": f"Proof {i}.",
                     "human_grade": human, "category": ("Algebra", "Geometry", "Combinatorics")[i % 3],
                     "level": ("IMO-easy", "IMO-hard")[i % 2], "set": "demo"})
    run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human", rows=rows)
    for i in range(12):
        auto = (1.0, 0.9, 0.8, 0.1)[i % 4]  # false accepts where experts gave 1 point
        store.add_grade(run, f"dsm2-auto:x{i}", proof_id=f"x{i}", grader="dsm2-auto", raw=str(auto), grade=auto,
                        max_grade=1.0, normalised=auto, status="ok")
    return run


def test_report_documents_hold_the_metrics_and_every_plot(tmp_path):
    store = Store(":memory:")
    run = graded_run(store)
    paths = write_report(store, run, tmp_path / "rep", n_resamples=200)
    md = (tmp_path / "rep" / "report.md").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert paths["figures"] == ["by_category", "by_level", "by_set", "calibration", "histogram"]
    for name in paths["figures"]:
        assert f"({name}.png)" in md and (tmp_path / "rep" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Self-contained: every image is inline, nothing is fetched.
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(srcs) == 5 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in page and "https://" not in page
    assert all(base64.b64decode(s.split(",", 1)[1])[:4] == b"\x89PNG" for s in srcs)
    # The agreement numbers: auto accepts 9 of 12 (>= 0.75); experts accept 6 (7 or 6 points).
    agree = metrics["agreement"]["dsm2-auto"]["overall"]
    assert agree["confusion"] == {"tp": 6, "fp": 3, "fn": 0, "tn": 3}
    assert "| dsm2-auto | overall | 12 | 6/3/0/3 | 0.67 [" in md
    assert "human | 12/12 | 0.500 [" in md  # (7 + 6 + 1 + 0) * 3 / (12 * 7)
    assert "<h2>Agreement with human grades</h2>" in page and "false accepts: x2" in page


def test_report_of_an_unknown_run_and_an_unwritable_folder(tmp_path):
    store = Store(":memory:")
    with pytest.raises(UserInputError, match="no run"):
        build_report(store, "r-missing")
    run = graded_run(store)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserInputError, match="cannot write"):
        write_report(store, run, blocker / "sub", n_resamples=20)


def test_report_escapes_html_in_problem_ids(tmp_path):
    store = Store(":memory:")
    run = create_grade_run(store, ModelSetup(ModelSettings(provider="sim")), grader="human", rows=[
        {"id": "<b>x</b>", "statement": "P", "proof": "Q", "human_grade": 0, "category": "<script>alert(1)</script>"}])
    page = build_report(store, run, n_resamples=20).html
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


@needs_chromium
def test_html_report_opens_in_headless_chromium_and_its_plots_decode(tmp_path):
    store = Store(":memory:")
    run = graded_run(store)
    write_report(store, run, tmp_path / "rep", n_resamples=100)
    page = (tmp_path / "rep" / "report.html").read_text()
    # A copy with a tiny script that writes each image's decoded size into the DOM.
    probe = ('<script>window.addEventListener("load",()=>{document.body.setAttribute("data-imgs",'
             '[...document.images].map(i=>i.id+":"+i.naturalWidth+"x"+i.naturalHeight).join(","))})</script>')
    check = tmp_path / "rep" / "check.html"
    check.write_text(page.replace("</body>", probe + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", check.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    m = re.search(r'data-imgs="([^"]*)"', dom)
    assert m, dom[:500]
    sizes = dict(item.split(":") for item in m.group(1).split(","))
    assert set(sizes) == {"fig-histogram", "fig-calibration", "fig-by_category", "fig-by_level", "fig-by_set"}
    for wh in sizes.values():
        w, h = map(int, wh.split("x"))
        assert w > 100 and h > 100
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,2400", f"--screenshot={shot}",
                    (tmp_path / "rep" / "report.html").as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert img.size == (1200, 2400) and len(colours) > 50  # a rendered page with plots, not a blank one
