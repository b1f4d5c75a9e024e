"""The viewer's pure parts: SVG charts (api/viewer/charts.py) and pagination (pages.pages),
with property tests: every chart is well-formed SVG with its marks inside the frame and its
labels escaped; every page window lies inside the list."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from hypothesis import given
from hypothesis import strategies as st

from proofloop.api.viewer.charts import HEIGHT, WIDTH, RoundScores, scatter, score_chart
from proofloop.api.viewer.pages import pages

SVG = "{http://www.w3.org/2000/svg}"
UNIT = st.floats(0.0, 1.0, allow_nan=False)


def marks_inside(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # well-formed
    assert root.tag == f"{SVG}svg"
    for c in root.iter(f"{SVG}circle"):
        assert 0 <= float(c.get("cx")) <= WIDTH and 0 <= float(c.get("cy")) <= HEIGHT
    for line in root.iter(f"{SVG}polyline"):
        for point in line.get("points").split():
            x, y = map(float, point.split(","))
            assert 0 <= x <= WIDTH and 0 <= y <= HEIGHT
    assert not any(k.startswith("on") or k == "style" for e in root.iter() for k in e.attrib)
    return root


@given(st.dictionaries(st.integers(0, 40), st.lists(UNIT, max_size=8), max_size=20))
def test_a_score_chart_is_well_formed_with_its_marks_in_the_frame(by_round):
    rounds = [RoundScores(r, means) for r, means in sorted(by_round.items())]
    root = marks_inside(score_chart(rounds))
    scored = [r for r in rounds if r.means]
    assert len(list(root.iter(f"{SVG}polyline"))) == (2 if scored else 0)
    assert len(list(root.iter(f"{SVG}circle"))) == 2 * len(scored)


def test_the_mean_and_best_lines_go_through_the_right_heights():
    root = ET.fromstring(score_chart([RoundScores(0, [0.0, 1.0]), RoundScores(1, [0.5])]))
    lines = {p.get("class"): [float(xy.split(",")[1]) for xy in p.get("points").split()]
             for p in root.iter(f"{SVG}polyline")}
    top, bottom = lines["best"][0], lines["mean"][1]
    assert lines["mean"][0] == lines["mean"][1] == bottom  # 0.5 in both rounds
    assert top < bottom  # the best of round 0 (1.0) is drawn above 0.5


@given(st.lists(st.tuples(UNIT, UNIT, st.text(max_size=20)), max_size=30), UNIT, UNIT)
def test_a_scatter_is_well_formed_and_escapes_its_labels(points, threshold, human_accept):
    root = marks_inside(scatter(points, threshold=threshold, human_accept=human_accept))
    circles = list(root.iter(f"{SVG}circle"))
    assert len(circles) == len(points)
    for c, (pred, human, label) in zip(circles, points):
        agree = (pred >= threshold) == (human >= human_accept)
        assert c.get("fill") == ("#1f5fa8" if agree else "#c62828")
        assert c.find(f"{SVG}title").text.endswith(f"score {pred:.3f}, grade {human:.3f}")


def test_a_hostile_label_stays_text():
    svg = scatter([(0.5, 0.5, "<script>alert(1)</script>")], threshold=0.5, human_accept=0.5)
    assert "<script>" not in svg and "&lt;script&gt;" in svg


@given(st.integers(0, 5000), st.integers(1, 100), st.integers(-5, 10_000))
def test_a_page_window_lies_inside_the_list(total, per_page, page):
    w = pages(total, per_page, page)
    assert 1 <= w["page"] <= w["last"] and 0 <= w["start"] <= w["stop"] <= total
    assert w["stop"] - w["start"] <= per_page
    if 1 <= page <= w["last"] and total:
        assert w["start"] == (page - 1) * per_page
    assert w["last"] == max(1, -(-total // per_page))
