"""`proofloop train ...`: training commands (the main CLI mounts `app` as `train`)."""

from __future__ import annotations

import typer

from proofloop.cli.train_rewards import serve_rewards

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train the verifier, meta-verifier and generator.")
app.command("serve-rewards")(serve_rewards)
