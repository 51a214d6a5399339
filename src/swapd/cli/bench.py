"""``swapd bench``: a model's prompt and generation tokens/s and time to first token, measured
through a running swapd (swapd.fleet).

The run happens in the server (``POST /api/models/{id}/bench``, :mod:`swapd.proxy.fleet.bench`):
this command starts it, shows its progress, prints the table and, on Ctrl-C, cancels it.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from swapd.cli.exits import fail
from swapd.cli.remote import connect, table, url_option

if TYPE_CHECKING:
    from swapd.client import Client

POLL = 0.25  # seconds between looks at the job


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected whole numbers like 1,4,16") from None
    if not levels or min(levels) < 1:
        raise click.BadParameter(f"{text!r}: expected whole numbers from 1, like 1,4,16")
    return levels


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


COLUMNS = [
    ("CONC", lambda r: str(r["concurrency"])),
    ("REQS", lambda r: f"{r['requests'] - r['failed']}/{r['requests']}"),
    ("PROMPT", lambda r: f"{r['prompt_tokens']:g}"),
    ("GEN", lambda r: f"{r['gen_tokens']:g}"),
    ("PP TOK/S", lambda r: _rate(r["pp_tps"])),
    ("TG TOK/S", lambda r: _rate(r["tg_tps"])),
    ("TOTAL TOK/S", lambda r: _rate(r["total_tps"])),
    ("TTFT MS", lambda r: _ms(r["ttft_ms"])),
    ("TTFT MAX", lambda r: _ms(r["ttft_max_ms"])),
    ("TIMED BY", lambda r: str(r["timing"])),
]


def _print(job: dict[str, Any]) -> None:
    load = job["load_seconds"]
    if load is not None:
        click.echo(f"{job['model']} loaded in {load:.1f}s (not counted in the figures)")
    table(job["levels"], COLUMNS)
    for level in job["levels"]:
        if level["error"]:
            click.echo(
                f"concurrency {level['concurrency']}: {level['failed']} failed: {level['error']}"
            )


def _status(job: dict[str, Any], began: float) -> str:
    elapsed = time.monotonic() - began
    if job["phase"] == "loading":
        return f"loading {job['model']} {elapsed:.1f}s"
    if job["level"] is None:
        return f"{job['phase']} {job['model']}"
    concurrency = job["params"]["concurrency"][job["level"]]
    return f"{job['model']} concurrency {concurrency}: {job['done']}/{concurrency} requests"


def _follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll the job until it ends; Ctrl-C cancels it on the server (exit 130)."""
    from rich.console import Console

    began = time.monotonic()
    try:
        with Console(stderr=True).status(_status(job, began)) as status:
            while job["state"] == "running":
                time.sleep(POLL)
                job = client.bench_job(job["id"])
                status.update(_status(job, began))
    except KeyboardInterrupt:
        client.bench_cancel(job["id"])
        click.echo(f"swapd: bench {job['id']} cancelled", err=True)
        sys.exit(130)
    return job


@click.command()
@click.argument("model")
@click.option(
    "--concurrency",
    "levels",
    callback=lambda _c, _p, v: _levels(v) if v is not None else None,
    help="Concurrency levels, comma-separated (default 1,4,8; at most the model's "
    "concurrencyLimit).",
)
@click.option(
    "--prompt-tokens",
    type=click.IntRange(1),
    help="About this many prompt tokens per request (default 512; the engine's count is shown).",
)
@click.option(
    "--gen-tokens", type=click.IntRange(1), help="Tokens generated per request (default 128)."
)
@click.option("--history", is_flag=True, help="Print the model's stored results; run nothing.")
@url_option
def bench(
    model: str,
    levels: list[int] | None,
    prompt_tokens: int | None,
    gen_tokens: int | None,
    history: bool,
    url: str,
) -> None:
    """Benchmark MODEL through swapd (starting it if needed): prompt-processing and generation
    tokens/s and time to first token per concurrency level. The run is a server-side job kept
    with the model's activity; Ctrl-C cancels it."""
    with connect(url) as client:
        if history:
            for result in client.bench_results(model):
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(result["time"]))
                params = result["params"]
                click.echo(
                    f"{when}  {result['id']}: prompt {params['prompt_tokens']} tokens, "
                    f"generate {params['gen_tokens']}"
                )
                _print(result)
            return
        params = {
            key: value
            for key, value in (
                ("concurrency", levels),
                ("prompt_tokens", prompt_tokens),
                ("gen_tokens", gen_tokens),
            )
            if value is not None
        }
        job = _follow(client, client.bench_start(model, params))
        if job["state"] != "done":
            from swapd.client import ApiError

            fail(ApiError(502, job["error"] or f"bench {job['state']}"))
        _print(job)
