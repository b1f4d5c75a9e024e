"""api/markdown.py: Markdown with LaTeX to safe HTML with MathML. Every delimiter, links,
raw HTML, formulas latex2mathml cannot convert or converts into markup, property tests over
arbitrary input, and the released DeepSeekMath-V2 proofs (read at test time)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proofloop.api.markdown import clean_mathml, render_inline, render_markdown, safe_link, tex_to_mathml

DSM2_OUTPUTS = Path("/work/shared/data/dsm2/outputs")


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text a reader sees (outside <math>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.math_depth = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self.math_depth += tag == "math"

    def handle_endtag(self, tag):
        self.math_depth -= tag == "math"

    def handle_data(self, data):
        if not self.math_depth:
            self.text.append(data)


def parsed(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    p.close()
    return p


def assert_safe(html: str) -> None:
    for tag, attrs in parsed(html).tags:
        assert tag not in ("script", "iframe", "object", "embed", "img", "style", "svg", "form", "base"), html
        for name, value in attrs.items():
            assert not name.startswith("on"), html
            assert name not in ("style", "srcdoc", "src", "xlink:href", "formaction"), html
            if name == "href":
                assert safe_link(value or ""), html


# ---- delimiters ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, display", [
    ("Let $x^2$ be", False),
    (r"Let \(x^2\) be", False),
    (r"Let \( x^2 \) be", False),
    ("Let $$x^2$$ be", True),
    (r"Let \[x^2\] be", True),
    ("Let\n\n$$\nx^2\n$$\n\nbe", True),
    ("Let\n\\[\nx^2\n\\]\nbe", True),
    ("Let\n\n\\[\nx^2\n\\]\n\nbe", True),
    ("Let\n\\begin{align*}\nx^2 &= 1\\\\\ny &= 2\n\\end{align*}\nbe", True),
])
def test_every_delimiter_becomes_mathml(text, display):
    html = render_markdown(text)
    assert html.count("<math") == 1, html
    assert f'display="{"block" if display else "inline"}"' in html
    assert "<msup><mi>x</mi><mn>2</mn></msup>" in html
    seen = "".join(parsed(html).text)
    assert "$" not in seen and "\\" not in seen and "x^2" not in seen, seen
    assert "Let" in seen and "be" in seen


def test_a_display_formula_inside_a_paragraph_keeps_the_paragraph_valid():
    html = render_markdown(r"so \[a=b\] holds")
    assert html.startswith("<p>so <span class=\"math display\"><math display=\"block\">")
    assert "<div" not in html  # a div would close the <p> early


def test_lines_inside_display_math_are_not_read_as_markdown():
    html = render_markdown("We have\n\\[\na = b\n- c\n\\]\nthen")
    assert "<ul>" not in html and "<li>" not in html
    assert "<mo>−</mo><mi>c</mi>" in html


def test_a_double_backslash_bracket_is_not_a_closing_delimiter():
    html = render_markdown("\\[\n\\begin{aligned} a &= b\\\\[2mm] c &= d \\end{aligned}\n\\]")
    assert html.count("<math") == 1 and "<mtable" in html and "tex-error" not in html


def test_several_formulas_and_markdown_around_them():
    html = render_markdown("**Claim.** For $n\\ge 1$ and \\(m\\), *both* `$code$` hold.\n\n1. $a$\n2. $b$")
    assert html.count("<math") == 4
    assert "<strong>Claim.</strong>" in html and "<em>both</em>" in html and "<ol>" in html
    assert "<code>$code$</code>" in html  # code spans keep their dollars


@pytest.mark.parametrize("text", ["It costs $5 and $6 more.", r"An escaped \$ sign.", "one $ alone", r"\(", r"\["])
def test_text_that_is_not_mathematics_stays_text(text):
    html = render_markdown(text)
    assert "<math" not in html and "tex-error" not in html


def test_comparison_signs_inside_formulas_are_mathematics_not_markup():
    html = render_markdown("$a<b$ and $c>d$ and $x<y>z$")
    assert html.count("<math") == 3 and "<mo>&lt;</mo>" in html and "<b" not in html.replace("<b>", "")


# ---- formulas latex2mathml cannot convert, or converts into markup ---------------------------------


@pytest.mark.parametrize("tex", [r"\frac{1}{", r"\left( x", r"\foo{"])
def test_a_formula_that_cannot_be_converted_is_shown_as_escaped_tex(tex):
    out = tex_to_mathml(tex, display=False)
    assert out.startswith('<code class="tex-error"') and "<math" not in out


@pytest.mark.parametrize("tex", [r"\text{<script>alert(1)</script>}", r"\text{<img src=x onerror=alert(1)>}",
                                 r"\text{<b}"])
def test_markup_smuggled_through_latex2mathml_is_never_emitted(tex):
    out = tex_to_mathml(tex, display=True)
    assert out.startswith('<code class="tex-error"'), out
    assert "<script" not in out and "<img" not in out
    assert_safe(out)


def test_markup_read_as_symbols_stays_symbols():
    out = tex_to_mathml(r"\mathrm{</math><script>x</script>}", display=True)
    assert out.startswith("<math") and "<mo>&lt;</mo>" in out
    assert_safe(out)


def test_href_and_foreign_attributes_are_dropped_from_mathml():
    out = tex_to_mathml(r"\href{javascript:alert(1)}{x}", display=False)
    assert "<math" in out and "href" not in out and "javascript" not in out
    assert clean_mathml('<math><mi onclick="x" class="c" mathvariant="bold">a</mi></math>') == \
        '<math><mi mathvariant="bold">a</mi></math>'


def test_an_attribute_value_with_quotes_stays_inside_its_attribute():
    out = tex_to_mathml(r'\color{red" onload="alert(1)}{y}', display=False)
    assert_safe(out)
    assert all(not name.startswith("on") for _, attrs in parsed(out).tags for name in attrs)


# ---- raw HTML and links --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "<div onclick='alert(1)'>x</div>",
    "<a href='javascript:alert(1)'>x</a>",
    "<iframe srcdoc='<script>alert(1)</script>'></iframe>",
    "<svg onload=alert(1)>",
    "<!-- comment --><style>body{}</style>",
])
def test_raw_html_is_escaped(text):
    html = render_markdown(text)
    assert "&lt;" in html
    assert_safe(html)


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(1)", "java\tscript:alert(1)",
                                 "data:text/html;base64,PHNjcmlwdD4=", "vbscript:msgbox(1)", "file:///etc/passwd",
                                 " javascript:alert(1)", "jav&#x09;ascript:alert(1)", "%6Aavascript:alert(1)"])
def test_links_with_a_dangerous_scheme_lose_their_target(url):
    for text in (f"[click]({url})", f"<{url}>", f"[click][r]\n\n[r]: {url}"):
        html = render_markdown(text)
        assert_safe(html)
        assert "javascript:" not in html.lower().replace("\t", "") or "href" not in html


@pytest.mark.parametrize("url", ["https://example.org/a?b=1", "http://example.org", "mailto:a@example.org",
                                 "/runs/x", "#section", "page.html"])
def test_safe_links_keep_their_target_and_tell_the_browser_not_to_follow_them(url):
    html = render_markdown(f"[see]({url})")
    link = [attrs for tag, attrs in parsed(html).tags if tag == "a"]
    assert link and link[0]["href"] == url and link[0]["rel"] == "nofollow noopener noreferrer"


def test_an_issue_line_renders_its_formulas_without_a_paragraph():
    html = render_inline("Step 3: the bound $x < 1$ fails for \\(n\\) even <b>really</b>")
    assert not html.startswith("<p>") and html.count("<math") == 2 and "&lt;b&gt;" in html


def test_images_are_not_loaded():
    html = render_markdown("![tracker](https://example.org/pixel.png)")
    assert "<img" not in html


# ---- properties --------------------------------------------------------------------------


TOKENS = st.sampled_from(["$", "$$", "\\(", "\\)", "\\[", "\\]", "\\", "{", "}", "<", ">", "<script>", "</math>",
                          "<img src=x onerror=alert(1)>", "javascript:", "[a](", ")", "](", "\n", "\n\n", "`", "*",
                          "_", "^", "&", "#", "- ", "1. ", "\\begin{align*}", "\\end{align*}", "\\text{", "\\href{",
                          "\\frac", "x", " ", "'", '"', "onload=", "&#x6A;", "\\left(", "\\\\"])
MARKDOWNISH = st.lists(TOKENS | st.text(max_size=5), max_size=40).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MARKDOWNISH)
def test_no_input_produces_script_event_handlers_or_script_links(text):
    for html in (render_markdown(text), render_inline(text)):  # never raises
        assert "<script" not in html.lower()
        assert_safe(html)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60) | MARKDOWNISH)
def test_any_formula_is_clean_mathml_or_escaped_code(tex):
    for display in (False, True):
        out = tex_to_mathml(tex, display=display)
        assert out.startswith("<math") or out.startswith('<code class="tex-error"')
        assert_safe(out)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_plain_text_without_special_characters_comes_back_as_it_was(text):
    plain = re.sub(r"[^A-Za-z0-9 ]", "", text).strip()
    if plain:
        assert " ".join("".join(parsed(render_markdown(plain)).text).split()) == " ".join(plain.split())


# ---- real proofs -------------------------------------------------------------------------


def released_proofs() -> list[str]:
    if not DSM2_OUTPUTS.is_dir():
        return []
    return [json.loads(line)["model_prediction"]["proof"] for path in sorted(DSM2_OUTPUTS.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_released_proofs_render_with_their_mathematics():
    proofs = released_proofs()
    if not proofs:
        pytest.skip(f"{DSM2_OUTPUTS} is not here")
    formulas = failed = 0
    for proof in proofs:
        html = render_markdown(proof)
        assert_safe(html)
        formulas += html.count("<math")
        failed += html.count("tex-error")
        seen = "".join(parsed(html).text)
        assert "\\(" not in seen and "\\)" not in seen, seen[:500]
    assert len(proofs) >= 80 and formulas > 20 * len(proofs)
    assert failed < 0.02 * formulas, (failed, formulas)  # nearly every formula converts
