"""`proofloop train ...`: training the three roles (issue 9). Mounted as the sub-app "train".

    proofloop train data verifier --from labels.jsonl -o verifier.jsonl
    proofloop train rft --from labels.jsonl --model M --output-dir rft-out
    proofloop train serve-rewards --port 8100 --judge-base-url http://judge:8000/v1 --judge-model M
"""

from __future__ import annotations

import typer

from proofloop.cli.train_data import data
from proofloop.cli.train_rewards import serve_rewards
from proofloop.cli.train_rft import rft

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Training: datasets, rejection fine-tuning (TRL), the rewards as a service.")
app.command()(data)
app.command()(rft)
app.command("serve-rewards")(serve_rewards)
