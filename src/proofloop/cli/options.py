"""Options shared by commands, defined once.

`@model_options` adds the one bundle of model options (provider, server, key, model, max-n,
concurrency, timeout, templates, sampling, seed) to a command and hands it to the command as
one `ModelOptions` value; `Db`, `Json` and `Verbose` are the options every command has.
Nothing heavy is imported here, so `proofloop --help` starts fast.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

if TYPE_CHECKING:
    from proofloop.runs import ModelSetup

Db = Annotated[Optional[str], typer.Option(help="run store: an SQLite file or a postgresql+psycopg://... URL "
                                               "(or PROOFLOOP_DB; default ./.proofloop/proofloop.db)")]
Json = Annotated[bool, typer.Option("--json", help="print one JSON object for scripts")]
Worker = Annotated[Optional[str], typer.Option("--worker", metavar="RUN",
                                               help="join run RUN (made with --split) as one of its workers")]
Split = Annotated[bool, typer.Option("--split", help="store the run and its work items for --worker processes, "
                                                     "print its id, do no work")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="show retries and other details on stderr")]
REPLICAS_HELP = "; several replicas of the model: repeat it or separate URLs with commas"


def joined_urls(values: list[str] | None) -> str | None:
    """A repeated server-URL option as the one comma-separated value ModelSettings keeps (each
    URL a replica of the model, models/replicas.py); None when it was not given.

    >>> joined_urls(["http://a:8000/v1", "http://b:8000/v1,http://c:8000/v1"])
    'http://a:8000/v1,http://b:8000/v1,http://c:8000/v1'
    """
    return ",".join(values) if values else None


@dataclass
class ModelOptions:
    provider: Annotated[Optional[str], typer.Option(
        help="openai | local | sim (default: openai if a server is configured, else the embedded local model)")] = None
    base_url: Annotated[Optional[list[str]], typer.Option(
        help="OpenAI-compatible server URL, e.g. http://host:8000/v1 (or PROOFLOOP_BASE_URL)" + REPLICAS_HELP)] = None
    api_key: Annotated[Optional[str], typer.Option(help="API key (or PROOFLOOP_API_KEY)")] = None
    model: Annotated[Optional[str], typer.Option(
        "--model", help="model id on the server, hub id or local path (or PROOFLOOP_MODEL)")] = None
    max_n: Annotated[Optional[int], typer.Option(
        min=1, help="most samples the server returns per request (found out by itself when the server ignores n)")] = None
    max_concurrency: Annotated[int, typer.Option(min=1, help="requests in flight to the server")] = 8
    max_sequences: Annotated[Optional[int], typer.Option(
        min=1, help="samples in flight to the server (each freed as its streamed sample ends): a search's "
                    "priorities then order the work on a FIFO server too; set it to the server's max-num-seqs "
                    "(bench/search/README.md)")] = None
    attempt_timeout: Annotated[Optional[float], typer.Option(
        min=0.001, help="seconds one request attempt may take (streams are never cut while tokens flow)")] = None
    max_tokens: Annotated[Optional[int], typer.Option(
        min=1, help="max tokens per proof [default: 131072 on a server, 512 embedded]")] = None
    verify_max_tokens: Annotated[Optional[int], typer.Option(
        min=1, help="max tokens per verification / meta-verification [default: 65536 on a server, 512 embedded]")] = None
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="sampling temperature (the paper: 1.0)")] = 1.0
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="nucleus sampling (the paper: 0.95)")] = 0.95
    seed: Annotated[Optional[int], typer.Option(
        help="seed for the search and the server's sampling: the same seed gives the same run")] = None
    templates: Annotated[Optional[Path], typer.Option(
        help="folder with generate.md / verify.md / meta_verify.md / refine.md to use instead of ours")] = None
    pack: Annotated[Optional[str], typer.Option(
        help="domain pack: math (default) | law | code | any installed one (`proofloop packs list`)")] = None

    def setup(self) -> "ModelSetup":
        """The run-layer value these options describe (imports the model layer only now)."""
        from proofloop.models.factory import ModelSettings
        from proofloop.models.base import Timeouts
        from proofloop.protocol import Templates
        from proofloop.runs import ModelSetup
        from proofloop.packs import get_pack

        pack = get_pack(self.pack)
        templates = pack.templates
        if self.templates:  # the user's files win, role by role, over the pack's wording
            own = Templates.load(self.templates)
            given = {f.name for f in fields(Templates) if (self.templates / f"{f.name}.md").exists()}
            templates = own if templates is None else replace(templates, **{r: getattr(own, r) for r in given})
        return ModelSetup(
            ModelSettings(provider=self.provider, base_url=joined_urls(self.base_url),
                          model=self.model, max_n=self.max_n),
            temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
            verify_max_tokens=self.verify_max_tokens, seed=self.seed,
            templates=templates, pack=pack.name,
            max_concurrency=self.max_concurrency, max_sequences=self.max_sequences,
            timeouts=Timeouts(attempt_s=self.attempt_timeout) if self.attempt_timeout else Timeouts(),
            api_key=self.api_key)


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the model options; it receives them as `model_options: ModelOptions`."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "model_options"]
    hints = inspect.get_annotations(ModelOptions, eval_str=True)
    added = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
             for f in fields(ModelOptions)]
    names = [f.name for f in fields(ModelOptions)]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        bundle = ModelOptions(**{name: kwargs.pop(name) for name in names})
        return command(model_options=bundle, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + added
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read our signature, not the command's
    return wrapper
