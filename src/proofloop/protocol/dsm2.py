r"""Import the prompt templates released with DeepSeekMath-V2 as a proofloop template folder.

DeepSeek's inference code ships `inference/math_templates.py`: a Python dict of four
`str.format` templates. We read that file with `ast`, never executing it, take the four string
literals, undo str.format's brace escaping (`{{` means `{`) and turn its format fields into our
`{{name}}` placeholders:

    released key          its fields                      our file         our placeholders
    proof_generation      {question}                      generate.md      {{problem}}
    proof_verification    {statement} {proof}             verify.md        {{problem}} {{proof}}
    meta_verification     {statement} {proof} {rating}    meta_verify.md   {{problem}} {{proof}} {{analysis}}
    proof_refinement      {instruction} {proofs_to_refine} refine.md       {{instruction}} {{candidates}}

Rendered by protocol.templates, the imported folder gives the very prompts the released script
builds (same problem, proof, analyses), apart from how we number and lay out the candidates of
a refinement, which our `format_candidates` does in the released script's layout.

    >>> src = 'T = {"proof_generation": "Prove {question}, write \\\\boxed{{1}}.",\n' \
    ...       '     "proof_verification": "{statement}|{proof}",\n' \
    ...       '     "meta_verification": "{statement}|{proof}|{rating}",\n' \
    ...       '     "proof_refinement": "{instruction}\\n{proofs_to_refine}"}'
    >>> t = import_dsm2_templates(src)
    >>> t.generate, t.meta_verify
    ('Prove {{problem}}, write \\boxed{1}.', '{{problem}}|{{proof}}|{{analysis}}')

The file's text is third-party (Apache-2.0): we import it on the user's machine from a copy they
have; none of it is shipped with proofloop.
"""

from __future__ import annotations

import ast
import string
import warnings
from pathlib import Path

from proofloop.errors import UserInputError
from proofloop.protocol.templates import Templates, check_template

# released key -> (our role, {released field: our placeholder}); every field is required.
FIELD_MAP: dict[str, tuple[str, dict[str, str]]] = {
    "proof_generation": ("generate", {"question": "problem"}),
    "proof_verification": ("verify", {"statement": "problem", "proof": "proof"}),
    "meta_verification": ("meta_verify", {"statement": "problem", "proof": "proof", "rating": "analysis"}),
    "proof_refinement": ("refine", {"instruction": "instruction", "proofs_to_refine": "candidates"}),
}

_STRIPS = {"strip", "lstrip", "rstrip"}


def _literal(node: ast.expr) -> str | None:
    """The value of a string literal, also through `.strip()`-like calls (the released file
    writes `\"\"\"...\"\"\".strip()`); None for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _STRIPS
            and not node.args and not node.keywords):
        inner = _literal(node.func.value)
        return None if inner is None else getattr(inner, node.func.attr)()
    return None


def _assigned(tree: ast.Module) -> dict[str, ast.expr]:
    """Every expression the module binds to a template name: entries of dict literals with
    string keys, and plain `name = ...` assignments at the top level."""
    found: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value in FIELD_MAP:
                    found[key.value] = value
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id in FIELD_MAP:
                found[target.id] = node.value  # type: ignore[union-attr]
    return found


def convert_format_string(key: str, text: str) -> str:
    """One released str.format template as our `{{name}}` template (see the table above)."""
    role, fields = FIELD_MAP[key]
    out: list[str] = []
    seen: set[str] = set()
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as e:
        raise UserInputError(f"template {key} is not a valid format string: {e}") from None
    for literal, name, spec, conversion in parts:
        out.append(literal)
        if name is None:
            continue
        if name not in fields or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise UserInputError(f"template {key} has unknown placeholder {shown} "
                                 f"(known: {', '.join('{' + f + '}' for f in fields)})")
        out.append("{{" + fields[name] + "}}")
        seen.add(name)
    missing = [f for f in fields if f not in seen]
    if missing:
        raise UserInputError(f"template {key} lacks the placeholder "
                             + ", ".join("{" + m + "}" for m in missing))
    return "".join(out)


def import_dsm2_templates(source_text: str, source: str = "the file") -> Templates:
    """The four released templates in `source_text` (the text of math_templates.py) as our
    Templates. Raises UserInputError (one line naming `source`) when it is not Python, holds
    none or only some of the four templates, or a template has an unknown or missing field."""
    try:
        with warnings.catch_warnings():  # the released file has backslash-paren escapes Python warns about
            warnings.simplefilter("ignore")
            tree = ast.parse(source_text)
    except (SyntaxError, ValueError) as e:
        raise UserInputError(f"{source} is not Python source ({e.__class__.__name__}: {e})") from None
    found = _assigned(tree)
    if not found:
        raise UserInputError(f"{source} assigns none of the DeepSeekMath-V2 templates "
                             f"({', '.join(FIELD_MAP)}); is it inference/math_templates.py?")
    missing = [k for k in FIELD_MAP if k not in found]
    if missing:
        raise UserInputError(f"{source} lacks the template(s) {', '.join(missing)}")
    roles: dict[str, str] = {}
    for key, (role, _) in FIELD_MAP.items():
        text = _literal(found[key])
        if text is None:
            raise UserInputError(f"template {key} in {source} is not a string literal")
        roles[role] = convert_format_string(key, text)
        check_template(role, roles[role], f"{key} in {source}")
    return Templates(**roles)


def write_template_folder(templates: Templates, folder: str | Path, *, overwrite: bool = False) -> list[Path]:
    """Write generate.md, verify.md, meta_verify.md and refine.md (what `Templates.load(folder)`
    reads) into `folder`, creating it; the texts are written exactly, with no newline added.
    Refuses (UserInputError) to replace existing files unless `overwrite`."""
    d = Path(folder)
    roles = ("generate", "verify", "meta_verify", "refine")
    paths = [d / f"{r}.md" for r in roles]
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise UserInputError(f"{d} already holds {', '.join(existing)} (pass --force to replace them)")
    try:
        d.mkdir(parents=True, exist_ok=True)
        for role, path in zip(roles, paths):
            path.write_text(getattr(templates, role), encoding="utf-8", newline="")
    except OSError as e:
        raise UserInputError(f"cannot write templates to {d}: {e}") from None
    return paths
