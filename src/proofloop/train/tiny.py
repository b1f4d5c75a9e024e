"""A tiny causal language model and its tokenizer, built in-process: no download, no file.

For the tests, `make train-demo` and the GPU check: a GRPO run needs a policy, and a random
model must keep the roles' output contract (protocol/templates.py) often enough by chance for
the rewards to vary and the judges to be called. So the contract's pieces are single tokens:
the section headers, the key phrases, each boxed score; the rest of the vocabulary is filler
words. The tokenizer is word-level (text is split on whitespace, unknown words are <unk>) and
has a chat template, so TRL formats conversational prompts with it like any other.

    >>> tok = tiny_tokenizer()
    >>> tok.decode(tok.convert_tokens_to_ids([FINAL_SCORE_PHRASE, r"\\boxed{1}"]))
    'Based on my evaluation, the final overall score should be: \\\\boxed{1}'
    >>> model = tiny_model(tok, hidden=32, layers=1)
    >>> model.config.vocab_size == len(tok), model.num_parameters() < 100_000
    (True, True)
"""

from __future__ import annotations

from typing import Any

from proofloop.extras import require
from proofloop.protocol.templates import (EVAL_START, FINAL_SCORE_PHRASE, META_FINAL_PHRASE, META_START,
                                          SELF_EVAL_HEADER, SOLUTION_HEADER, Templates)

SPECIAL = ["<pad>", "<eos>", "<unk>", "<user>", "<assistant>"]
# Headers start and end a line (parsers.py reads them as whole lines); decoded tokens are joined
# by spaces, so the newlines travel inside the tokens.
CONTRACT = [f"\n{SOLUTION_HEADER}\n", f"\n{SELF_EVAL_HEADER}\n", EVAL_START, FINAL_SCORE_PHRASE, META_START,
            META_FINAL_PHRASE, r"\boxed{0}", r"\boxed{0.5}", r"\boxed{1}"]
FILLER = ["the", "claim", "holds", "by", "induction", "so", "it", "is", "complete", "wrong", "a", "gap", "step",
          "2", "=", "+", "1", "."]
# The chat layout: `<user> text <assistant>`; the assistant's turn ends with <eos>.
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}<assistant> {{ m['content'] }} <eos>"
                 "{% else %}<user> {{ m['content'] }} {% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")

# Short prompts for the tiny policy (the roles' own wording is a few hundred <unk> here, which
# only slows a CPU run down); judges keep theirs.
TINY_TEMPLATES = Templates(generate="Prove: {{problem}}", verify="Verify: {{problem}} Proof: {{proof}}",
                           meta_verify="Rate: {{problem}} Proof: {{proof}} Analysis: {{analysis}}",
                           refine="{{candidates}}")


def tiny_tokenizer(filler: int | list[str] | None = None) -> Any:
    """A word-level tokenizer over the special tokens, the contract's pieces and filler words
    (`filler`: a word list, or a count of made-up words `w0`..`wN` for a larger vocabulary, in
    which a random model keeps the contract less often)."""
    tokenizers = require("tokenizers", "train", "the tiny in-process model")
    transformers = require("transformers", "train", "the tiny in-process model")
    words = FILLER if filler is None else filler if isinstance(filler, list) else [f"w{i}" for i in range(filler)]
    vocab = {t: i for i, t in enumerate(SPECIAL + words)}
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    # Added tokens are found in the text before it is split on whitespace: a phrase stays one token.
    core.add_tokens([tokenizers.AddedToken(t, normalized=False) for t in CONTRACT])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>",
                                               unk_token="<unk>", padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_model(tokenizer: Any, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0) -> Any:
    """A randomly initialised Llama-style causal LM sized for `tokenizer` (hidden 64 and 2
    layers: about 0.1M parameters; hidden 512 and 8 layers: about 25M)."""
    torch = require("torch", "train", "the tiny in-process model")
    transformers = require("transformers", "train", "the tiny in-process model")
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def sample_outputs(task: str, count: int, *, seed: int = 0, broken: float = 0.2) -> list[str]:
    """`count` outputs of `task` in the tiny vocabulary: each keeps the contract with a random
    boxed score, except a share `broken` that lacks its final phrase (a format failure)."""
    import random

    rng = random.Random(seed)
    phrase = META_FINAL_PHRASE if task == "meta-verifier" else FINAL_SCORE_PHRASE
    opening = META_START if task == "meta-verifier" else EVAL_START
    out = []
    for _ in range(count):
        words = " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 4)))
        verdict = "" if rng.random() < broken else f"{phrase} {rng.choice(CONTRACT[-3:])}"
        evaluation = f"{opening} {words} {verdict}"
        if task == "generator":
            evaluation = f"{CONTRACT[0]} {' '.join(rng.choice(FILLER) for _ in range(3))} {CONTRACT[1]} {evaluation}"
        out.append(evaluation.rstrip())  # the generator's first token is its header, newline included
    return out


def warm_start(model: Any, tokenizer: Any, prompt: list[dict[str, str]], outputs: list[str], *, steps: int = 40,
               lr: float = 1e-2, seed: int = 0) -> Any:
    """Teach `model` (in place) to answer `prompt` like `outputs`: a few steps of next-token
    training, as a pretrained instruct model would start (a random one rarely keeps a contract
    as long as the generator's)."""
    torch = require("torch", "train", "the tiny in-process model")
    torch.manual_seed(seed)
    # Only the answers are learnt: the prompt is the same in every example (mostly <unk> here).
    start = len(tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False))
    texts = [tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": o}], tokenize=False)
             for o in outputs]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="right",
                      return_offsets_mapping=True)
    offsets = batch.pop("offset_mapping")
    labels = batch["input_ids"].masked_fill((batch["attention_mask"] == 0) | (offsets[..., 1] <= start), -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model
