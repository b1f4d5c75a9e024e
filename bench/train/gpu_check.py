"""A short GRPO run on the verifier task that shows the format reward rising, with tokens per
second per step: the TRL path (proofloop.train.grpo) on a GPU, with a model built here.

    python bench/train/gpu_check.py              # GPU: ~25M-parameter model, 16 x 8 completions a step
    python bench/train/gpu_check.py --cpu --tiny # CPU: 0.1M parameters, a minute or two

Run it through gpu_check.sh, which makes trl importable on a machine without it. The policy
is a randomly initialised Llama-style model over a word-level vocabulary in which the
verifier's output contract (the final phrase, a boxed score) is a few tokens among many
filler words (proofloop.train.tiny), so a random model keeps the contract rarely and GRPO has
something to learn: the verifier reward's format component. The prompts are synthetic
verification prompts with expert scores of 0, 0.5 or 1. The learning rate is raised far above
the paper's 1e-6 so that the rise shows in minutes: this checks the path and its speed, not
the paper's schedule. Exit code 0 when the format reward of the last quarter of the steps
beats the first quarter's, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from proofloop.train.grpo import GrpoSettings, train_grpo
from proofloop.train.tiny import TINY_TEMPLATES, tiny_model, tiny_tokenizer

SIZES = {  # name: (filler words, hidden, layers, heads, group, prompts per step, completion tokens, steps)
    "gpu": (100, 512, 8, 8, 16, 8, 32, 60),
    "tiny": (18, 64, 2, 4, 8, 2, 12, 24),
}


def synthetic_rows(count: int, seed: int = 0) -> list[dict]:
    """Labelled proofs of made-up statements, as `proofloop label` writes them."""
    rng = random.Random(seed)
    return [{"id": f"s{i}", "problem": f"Prove that {a} + {b} = {a + b}.",
             "proof": f"Add {a} and {b}." + (" Hence the claim." if rng.random() < 0.5 else ""),
             "status": "labelled", "score": rng.choice([0.0, 0.5, 1.0])}
            for i, (a, b) in enumerate((rng.randint(1, 99), rng.randint(1, 99)) for _ in range(count))]


def step_printer():
    """A TrainerCallback printing each step's format reward and throughput as it is logged."""
    from transformers import TrainerCallback

    class Printer(TrainerCallback):
        def __init__(self) -> None:
            self.format: list[float] = []
            self.last_tokens = 0.0

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "reward" not in logs:
                return
            fmt = logs.get("reward_components/format", 0.0)
            self.format.append(fmt)
            step_time = logs.get("step_time") or float("nan")
            tokens = logs.get("num_tokens", 0.0) - self.last_tokens  # prompt + completion tokens this step
            self.last_tokens = logs.get("num_tokens", 0.0)
            completion = logs["completions/mean_length"] * args.per_device_train_batch_size
            print(f"step {state.global_step:4d}  format {fmt:.3f}  reward {logs['reward']:.3f}  "
                  f"generated tok/s {completion / step_time:9.1f}  all tok/s {tokens / step_time:9.1f}  "
                  f"step {step_time:.2f}s", flush=True)

    return Printer()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="train on the CPU")
    parser.add_argument("--tiny", action="store_true", help="the 0.1M-parameter model and small steps")
    parser.add_argument("--steps", type=int, help="GRPO steps (default: 60 on the GPU size, 24 tiny)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default 3e-4 GPU, 1e-2 tiny)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args(argv)
    filler, hidden, layers, heads, group, prompts, length, steps = SIZES["tiny" if args.tiny else "gpu"]
    steps = args.steps or steps
    import torch

    if not args.cpu and not torch.cuda.is_available():
        print("no GPU visible: pass --cpu (with --tiny for a short run)", file=sys.stderr)
        return 2
    tok = tiny_tokenizer(filler)
    model = tiny_model(tok, hidden=hidden, layers=layers, heads=heads)
    print(f"model: {model.num_parameters() / 1e6:.2f}M parameters, vocabulary {len(tok)}, "
          f"{'CPU' if args.cpu else torch.cuda.get_device_name()}; {steps} steps of {prompts} prompts x "
          f"{group} completions of at most {length} tokens", flush=True)
    settings = GrpoSettings(
        steps=steps, num_generations=group, prompts_per_step=prompts, max_completion_length=length,
        use_cpu=args.cpu, seed=0,  # no checkpoints: TRL writes a model card then, which needs datasets
        overrides={"learning_rate": args.lr or (1e-2 if args.tiny else 3e-4), "gradient_checkpointing": False,
                   "save_strategy": "no", "bf16": not args.cpu})
    printer = step_printer()
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    started = time.monotonic()
    train_grpo("verifier", model, synthetic_rows(256), out, settings=settings, tokenizer=tok,
               templates=TINY_TEMPLATES, callbacks=[printer], print_logs=False)
    quarter = max(1, len(printer.format) // 4)
    first, last = (sum(v) / len(v) for v in (printer.format[:quarter], printer.format[-quarter:]))
    rising = last > first
    print(f"format reward: first {quarter} steps {first:.3f} -> last {quarter} steps {last:.3f}: "
          f"{'RISING' if rising else 'NOT RISING'}; {time.monotonic() - started:.0f}s in all; output in {out}")
    return 0 if rising else 1


if __name__ == "__main__":
    sys.exit(main())
