"""`proofloop packs list | show NAME`: the installed domain packs (mounted by cli/__init__.py).

    proofloop packs list
    proofloop packs show law --json
    proofloop verify --pack law --problem facts.md --proof analysis.md

A pack comes from this package (math, law, code) or from any installed package that declares
an entry point in the group `proofloop.packs` (packs/__init__.py).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from proofloop.cli.console import say
from proofloop.cli.options import Json
from proofloop.packs import DEFAULT_PACK, get_pack, pack_names, pack_sources

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Domain packs: rubric, templates, data sets, evidence and metrics per domain.")


@app.command("list")
def list_packs(json_out: Json = False) -> None:
    """Every installed pack, its source and one line about it."""
    sources = pack_sources()
    rows = []
    for name in pack_names():
        pack = get_pack(name)
        rows.append({"name": name, "source": sources[name], "default": name == DEFAULT_PACK,
                     "description": pack.description})
    if json_out:
        say(json.dumps(rows, indent=2))
        return
    for r in rows:
        say(f"{r['name']:<10} {r['description']}" + ("  (default)" if r["default"] else "") + f"  [{r['source']}]")


@app.command()
def show(name: Annotated[str, typer.Argument(help="pack name")], json_out: Json = False) -> None:
    """The rubric, issue classes, data sets and evidence of one pack."""
    info = get_pack(name).describe()
    if json_out:
        say(json.dumps(info, indent=2))
        return
    say(f"{info['name']}: {info['description']}")
    say("scores:")
    for score, meaning in info["scores"].items():
        say(f"  {score:>4}  {meaning}")
    say("issue classes:")
    for issue, meaning in info["issue_classes"].items():
        say(f"  {issue:<22} {meaning}")
    say(f"templates: {info['templates']}")
    say(f"data sets: {', '.join(info['datasets']) or 'none (see bench)'}")
    say(f"executable evidence: {'yes' if info['evidence'] else 'no'}")
