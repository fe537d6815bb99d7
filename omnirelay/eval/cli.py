"""``omnirelay eval heavy`` / ``omnirelay eval deepsearch``: run an evaluation against a running gateway and
write a Markdown results table (to ``--out`` and stdout). Progress goes to stderr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

eval_app = typer.Typer(no_args_is_help=True, help="Evaluate the compound modes against their base model.")

BaseUrl = Annotated[
    str,
    typer.Option("--base-url", envvar="OMNIRELAY_BASE_URL", help="the gateway's OpenAI-compatible base URL"),
]
ApiKey = Annotated[
    str, typer.Option("--api-key", envvar="OMNIRELAY_API_KEY", help="a gateway key (any text if keys are off)")
]
Model = Annotated[str, typer.Option("--model", "-m", help="the base model M (as the gateway routes it)")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="also write the Markdown table to this file")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="max_tokens of every call (0: the model's default)")]
Timeout = Annotated[float, typer.Option(help="seconds per request before it counts as failed")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="no per-item progress on stderr")]


def _progress(quiet: bool) -> Callable[[str], None] | None:
    return None if quiet else (lambda line: typer.echo(line, err=True))


def _emit(text: str, out: Path | None) -> None:
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    typer.echo(text)


@eval_app.command("heavy")
def heavy_command(
    model: Model,
    n: Annotated[int, typer.Option(min=1, help="number of problems")] = 50,
    agents: Annotated[int, typer.Option(min=1, help="heavy agents per problem")] = 4,
    seed: Annotated[int, typer.Option(help="problem generator seed")] = 1,
    max_tokens: MaxTokens = 512,
    temperature: Annotated[float, typer.Option(help="temperature of the single sample (<0: default)")] = 0.7,
    base_url: BaseUrl = "http://127.0.0.1:8080/v1",
    api_key: ApiKey = "sk-omnirelay-eval",
    out: Out = None,
    timeout: Timeout = 600.0,
    quiet: Quiet = False,
) -> None:
    """heavy:M vs one sample of M on generated multi-step arithmetic word problems."""
    from omnirelay.eval import heavy
    from omnirelay.eval.client import make_client

    settings = heavy.HeavySettings(
        model=model,
        n=n,
        agents=agents,
        seed=seed,
        max_tokens=max_tokens or None,
        temperature=temperature if temperature >= 0 else None,
    )
    client = make_client(base_url, api_key, timeout)
    outcomes = heavy.run(client, settings, _progress(quiet))
    _emit(heavy.render(settings, outcomes, base_url), out)


@eval_app.command("deepsearch")
def deepsearch_command(
    model: Model,
    questions: Annotated[int, typer.Option(min=1, help="questions to ask (the corpus has at least 20)")] = 20,
    seed: Annotated[int, typer.Option(help="corpus generator seed")] = 1,
    workdir: Annotated[Path, typer.Option(help="where the corpus folder and its index are written")] = Path(
        "omnirelay-eval"
    ),
    search: Annotated[
        str, typer.Option("--search", help="the gateway's search backend configured over this corpus's index")
    ] = "eval-corpus",
    top_k: Annotated[int, typer.Option(min=1, help="sources the single-shot baseline retrieves")] = 5,
    max_rounds: Annotated[int, typer.Option(min=1, help="deepsearch rounds")] = 3,
    max_tokens: MaxTokens = 1024,
    prepare_only: Annotated[
        bool, typer.Option("--prepare-only", help="write and index the corpus, print the config, and stop")
    ] = False,
    base_url: BaseUrl = "http://127.0.0.1:8080/v1",
    api_key: ApiKey = "sk-omnirelay-eval",
    out: Out = None,
    timeout: Timeout = 900.0,
    quiet: Quiet = False,
) -> None:
    """deepsearch:M vs single-shot retrieval on a generated fictional corpus (indexed locally with FTS5)."""
    from omnirelay.eval import deepsearch
    from omnirelay.eval.client import make_client

    settings = deepsearch.DeepSearchSettings(
        model=model,
        questions=questions,
        seed=seed,
        workdir=str(workdir),
        search=search,
        top_k=top_k,
        max_rounds=max_rounds,
        max_tokens=max_tokens or None,
    )
    prepared = deepsearch.prepare(settings)
    typer.echo(
        f"corpus: {len(prepared.corpus.docs)} documents in {prepared.folder}, indexed into {prepared.index}.\n"
        "The gateway needs this search backend in its config (then restart it):\n\n"
        + deepsearch.config_snippet(settings, prepared),
        err=True,
    )
    if prepare_only:
        return
    client = make_client(base_url, api_key, timeout)
    outcomes = deepsearch.run(client, settings, prepared, _progress(quiet))
    if outcomes and deepsearch.UNKNOWN_BACKEND in (outcomes[0].deep.error or ""):
        typer.echo(f"omnirelay: the gateway has no search backend {search!r}; add the snippet above", err=True)
        raise typer.Exit(2)
    _emit(deepsearch.render(settings, prepared, outcomes, base_url), out)
