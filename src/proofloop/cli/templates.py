"""`proofloop templates`: work with prompt template folders (mounted by cli/__init__.py).

    proofloop templates import-dsm2 DeepSeek-Math-V2/inference/math_templates.py -o dsm2-templates
    proofloop prove --templates dsm2-templates ...

`import-dsm2` turns the prompt file released with DeepSeekMath-V2 into a folder of
generate.md / verify.md / meta_verify.md / refine.md (protocol/dsm2.py does the work; the file
is parsed, never executed). Errors a user can fix raise UserInputError: one line, exit code 2.

"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from proofloop.cli.common import read_input
from proofloop.protocol.dsm2 import import_dsm2_templates, write_template_folder

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Prompt template folders.")


@app.callback()
def templates() -> None:
    """Prompt template folders (keeps `import-dsm2` a sub-command of `templates`)."""


@app.command("import-dsm2")
def import_dsm2(
    path: Annotated[Path, typer.Argument(help="the released inference/math_templates.py")],
    out: Annotated[Path, typer.Option("-o", "--out", help="folder to write the four .md templates to")]
    = Path("dsm2-templates"),
    force: Annotated[bool, typer.Option("--force", help="replace template files already in the folder")] = False,
) -> None:
    """Write DeepSeekMath-V2's released prompts as a template folder (use it with --templates)."""
    text = read_input(path, "prompt")
    written = write_template_folder(import_dsm2_templates(text, source=str(path)), out, overwrite=force)
    typer.echo(f"wrote {', '.join(p.name for p in written)} to {out}")
