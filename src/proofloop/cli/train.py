"""`proofloop train ...`: training the three roles (issue 9). Mounted as the sub-app "train".

    proofloop train data verifier --from labels.jsonl -o verifier.jsonl
    proofloop train rft --from labels.jsonl --model M --output-dir rft-out
"""

from __future__ import annotations

import typer

from proofloop.cli.train_data import data
from proofloop.cli.train_loop import loop
from proofloop.cli.train_rft import rft

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Training: datasets, rejection fine-tuning (TRL).")
app.command()(data)
app.command()(rft)
app.command()(loop)
