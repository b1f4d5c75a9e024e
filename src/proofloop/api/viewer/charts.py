"""Charts as inline SVG written on the server: no script, no style attribute (the page's
Content-Security-Policy allows neither inline), only numbers and escaped labels.

    >>> svg = score_chart([RoundScores(1, [0.5, 1.0]), RoundScores(2, [1.0])])
    >>> svg.count("<polyline"), 'aria-label="mean verification score per round"' in svg
    (2, True)
    >>> scatter([(0.9, 1.0, "p1")], threshold=0.75, human_accept=6 / 7).count("<circle")
    1
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 640, 260
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # not allowed in XML, so not in SVG text
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36  # margins for the axes and their labels


@dataclass
class RoundScores:
    """The mean scores of the proofs of one round that have one."""

    round: int
    means: list[float]

    @property
    def pool_mean(self) -> float:
        return sum(self.means) / len(self.means)


def x_of(value: float, low: float, high: float) -> float:
    span = (high - low) or 1.0
    return round(LEFT + (value - low) / span * (WIDTH - LEFT - RIGHT), 1)


def y_of(score: float) -> float:
    return round(HEIGHT - BOTTOM - score * (HEIGHT - TOP - BOTTOM), 1)


def frame(label: str, x_title: str, y_title: str) -> list[str]:
    """The svg element, the score axis (0 to 1) with a grid, and the axis titles."""
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(label)}">',
           f"<title>{escape(label)}</title>"]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(tick)
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#ddd" stroke-width="1"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end" font-size="11">{tick:g}</text>')
    out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" text-anchor="middle" '
               f'font-size="12">{escape(x_title)}</text>')
    out.append(f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" font-size="12" '
               f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(y_title)}</text>')
    return out


def score_chart(rounds: Sequence[RoundScores]) -> str:
    """Per round: the range of the proofs' mean scores (a bar), the pool's mean and its best
    (two lines). Rounds without a scored proof are left out."""
    rounds = [r for r in rounds if r.means]
    out = frame("mean verification score per round", "round", "mean score")
    if not rounds:
        out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no scored proof yet</text>')
        return "".join(out) + "</svg>"
    low, high = rounds[0].round - 0.5, rounds[-1].round + 0.5
    for r in rounds:
        x = x_of(r.round, low, high)
        out.append(f'<line class="range" x1="{x}" y1="{y_of(min(r.means))}" x2="{x}" y2="{y_of(max(r.means))}" '
                   f'stroke="#9ab" stroke-width="6" stroke-linecap="round"><title>round {r.round}: '
                   f'{len(r.means)} proofs, {min(r.means):.3f} to {max(r.means):.3f}</title></line>')
        out.append(f'<text x="{x}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" font-size="11">{r.round}</text>')
    for name, colour, value in (("mean", "#1f5fa8", lambda r: r.pool_mean), ("best", "#1a7f37", lambda r: max(r.means))):
        points = " ".join(f"{x_of(r.round, low, high)},{y_of(value(r))}" for r in rounds)
        out.append(f'<polyline class="{name}" points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{x_of(r.round, low, high)}" cy="{y_of(value(r))}" r="3" fill="{colour}">'
                f'<title>round {r.round} {name}: {value(r):.3f}</title></circle>' for r in rounds]
    return "".join(out) + "</svg>"


def scatter(points: Sequence[tuple[float, float, str]], *, threshold: float, human_accept: float) -> str:
    """Verifier score (x) against human grade (y), both in [0, 1], with the two acceptance
    lines; each point's title is its label."""
    out = frame("verifier score against human grade", "verifier score", "human grade")
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<text x="{x_of(tick, 0, 1)}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
                   f'font-size="11">{tick:g}</text>')
    x, y = x_of(threshold, 0, 1), y_of(human_accept)
    out.append(f'<line class="threshold" x1="{x}" y1="{TOP}" x2="{x}" y2="{HEIGHT - BOTTOM}" stroke="#b35900" '
               f'stroke-dasharray="4 3"><title>accept at score &gt;= {threshold:g}</title></line>')
    out.append(f'<line class="human-accept" x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#6a3d9a" '
               f'stroke-dasharray="4 3"><title>experts accept at grade &gt;= {human_accept:.3f}</title></line>')
    for pred, human, label in points:
        agree = (pred >= threshold) == (human >= human_accept)
        out.append(f'<circle cx="{x_of(pred, 0, 1)}" cy="{y_of(human)}" r="4" fill="{"#1f5fa8" if agree else "#c62828"}" '
                   f'fill-opacity="0.7"><title>{escape(CONTROL.sub("", label))}: score {pred:.3f}, grade {human:.3f}</title></circle>')
    return "".join(out) + "</svg>"
