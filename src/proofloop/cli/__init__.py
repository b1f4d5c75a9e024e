"""The `proofloop` command.

    proofloop prove problem.md                      # sequential refinement, best proof printed
    proofloop verify --problem p.md --proof f.md -n 8 --json
    proofloop meta-verify --problem p.md --proof f.md --analysis a.md -m 4
    proofloop label --proofs proofs.jsonl -n 8 -m 3 -k 2
    proofloop runs list | runs show RUN | runs export RUN -o run.jsonl
    proofloop resume RUN                            # finish a killed run, repeating no finished call
    proofloop check proof.md --problem p.md         # symbolic check of the proof's algebra (SymPy)
    proofloop bench ... | sim ... | templates ...   # sub-commands, loaded when used

Model server: --base-url/--model/--api-key, or PROOFLOOP_BASE_URL / PROOFLOOP_MODEL /
PROOFLOOP_API_KEY (OPENAI_* as fallback, `.env` read too). With none, the embedded SmolLM2 runs
on CPU. Bad input or an unusable server: one line on stderr and exit code 2, nothing stored lost.

Every module of this package imports only typer at the top: the model layer, the store and
the search load inside the commands, so `proofloop --help` starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
import sys

import typer

from proofloop.cli import check as check_cmds
from proofloop.cli import prove as prove_cmds
from proofloop.cli import runs as runs_cmds
from proofloop.cli.console import note
from proofloop.cli.label import label
from proofloop.errors import ProofloopError, UserInputError

# typer may bring its own copy of click: take its exception classes from typer itself.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Self-verifying proofs: prove, verify, meta-verify, search, grade and label.")
app.command(help="Prove a problem: sequential refinement with self verification by default. "
                 "`proofloop prove --help` lists the strategies' -o options.")(prove_cmds.prove)
app.command()(prove_cmds.verify)
app.command("meta-verify")(prove_cmds.meta_verify)
app.command()(label)
app.command()(runs_cmds.resume)
app.command()(check_cmds.check)
app.add_typer(runs_cmds.app, name="runs")

SUB_APPS = {  # name -> (module, help); imported only when used
    "bench": ("proofloop.cli.bench", "Benchmarks: prove and grade datasets, grader agreement, reports."),
    "sim": ("proofloop.cli.sim", "The simulated model: in-process or as an OpenAI-compatible server."),
    "templates": ("proofloop.cli.templates", "Prompt templates: import the released DeepSeek-Math-V2 wording."),
    "train": ("proofloop.cli.train", "Training the three roles: GRPO and rejection fine-tuning on TRL, datasets, rewards as a service."),
    "packs": ("proofloop.cli.packs", "Domain packs (math, law, code, installed ones): `packs list`, `packs show NAME`."),
    "serve": ("proofloop.cli.serve", "The proof service: HTTP API, web viewer, progress events and metrics (`proofloop serve --port N`)."),
}


_mounted: dict[str, str] = {}  # sub-app -> "listing" (name and help only) or "real"


def _mount(name: str | None) -> None:
    """Mount the sub-app `name` (None: all, for `proofloop --help`), or a stub that says which
    extra it needs when its module cannot be imported."""
    for sub, (module, help_text) in SUB_APPS.items():
        if name not in (None, sub) or _mounted.get(sub) == "real" or (name is None and sub in _mounted):
            continue
        app.registered_groups[:] = [g for g in app.registered_groups if g.name != sub]
        if name is None:  # the listing only needs the name and help: import nothing
            app.add_typer(typer.Typer(), name=sub, help=help_text)
            _mounted[sub] = "listing"
        else:
            app.add_typer(importlib.import_module(module).app, name=sub, help=help_text)
            _mounted[sub] = "real"


def _full_prove_help() -> None:
    """`prove --help` lists every strategy's -o keys and the presets (needs the search layer)."""
    from proofloop.search import options_help

    command = next(c for c in app.registered_commands if c.callback is prove_cmds.prove)
    command.help = ("Prove a problem: sequential refinement with self verification by default.\n\n"
                    + options_help().replace("\n", "\n\n"))


def main(argv: list[str] | None = None) -> None:
    """Entry point: one clear line and exit code 2 for errors a user can fix."""
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    try:
        _mount(first if first in SUB_APPS else None)
        if first == "prove" and ("--help" in args or "-h" in args):
            _full_prove_help()
        code = app(args=args, prog_name="proofloop", standalone_mode=False)
    except UsageError as e:  # click's own checks: unknown option, number out of range, ...
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `proofloop` or `proofloop runs`: help shown
            sys.exit(0)
        where = f"{e.ctx.command_path}: " if getattr(e, "ctx", None) else ""
        note(f"proofloop: error: {where}{e.format_message()}")
        code = 2
    except typer.Abort:
        note("proofloop: aborted")
        code = 130
    except (UserInputError, ProofloopError) as e:
        note(f"proofloop: error: {e}")
        code = 2
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
