"""``tuneforge recommend`` and ``tuneforge estimate``: advice and resources of docs/advice.md."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tuneforge.cli.common import config_from_target, console, handle_errors, is_config, print_json

TARGET = typer.Argument(None, help="A run config (.yaml) or a data file; or use --data.")
OVERRIDES = typer.Argument(None, help="key.sub=value overrides, e.g. method.name=full")


def _config(target: str | None, data: str | None, model: str | None, overrides: list[str] | None) -> Any:
    extra = list(overrides or [])
    if data and target:  # with --data, the positional arguments are all overrides
        extra.insert(0, target)
        target = None
    source = target or data
    if source is None:
        raise typer.BadParameter("give a config, or --data FILE (and optionally --model)")
    if model:
        extra.append(f"model.name_or_path={model}")
    return config_from_target(source, extra, {} if is_config(source) else {"model.name_or_path": model})


@handle_errors
def recommend(target: str = TARGET, overrides: list[str] = OVERRIDES,
              data: str = typer.Option(None, "--data", help="A data file (instead of a config)."),
              model: str = typer.Option(None, "--model", help="The model to tune (default: the embedded one)."),
              eval_result: str = typer.Option(None, "--eval", help="metrics.json of an evaluation of an existing "
                                              "model on your task: says whether fine-tuning is worth it."),
              as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Hyper-parameters for this data and model (docs/advice.md), each with its reason."""
    from tuneforge.advice.plan import recommendations
    from tuneforge.evaluation.evaluate import load_metrics

    metrics = load_metrics(eval_result)["metrics"] if eval_result else None
    out = recommendations(_config(target, data, model, overrides), metrics)
    if as_json:
        print_json(out)
        return
    table = Table(title=f"advice for {out['n_train']} training examples on {out['model']} "
                        f"({out['params'] / 1e6:.0f}M parameters), {out['total_steps']} steps")
    for col in ("key", "value", "reason"):
        table.add_column(col, overflow="fold")
    for a in out["advice"]:
        table.add_row(a["key"], str(a["value"]), a["reason"])
    console.print(table)
    console.print(f"global batch: {out['global_batch']} examples per optimizer step over {out['processes']} "
                  "process(es)", highlight=False)
    for w in out["warnings"]:
        console.print(f"[yellow]warning[/]: {w}")


def _prices(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    out = {}
    for v in values:
        name, _, price = v.partition("=")
        try:
            out[name] = float(price)
        except ValueError:
            raise typer.BadParameter(f"{v!r}: use NAME=CNY_PER_1K_TOKENS, e.g. bailian-8b=0.006") from None
    return out


@handle_errors
def estimate(target: str = TARGET, overrides: list[str] = OVERRIDES,
             data: str = typer.Option(None, "--data", help="A data file (instead of a config)."),
             model: str = typer.Option(None, "--model", help="The model to tune (default: the embedded one)."),
             zero_stage: int = typer.Option(None, "--zero-stage", min=0, max=3, help="ZeRO stage 0-3 (default: "
                                            "the config's distributed strategy; FSDP full_shard counts as 3)."),
             offload: bool = typer.Option(None, "--offload/--no-offload", help="Offload optimizer states (ZeRO) to "
                                          "CPU (default: the config's distributed.offload)."),
             devices: int = typer.Option(None, "--devices", min=1, help="Processes sharing the work (default: "
                                         "the config's nproc_per_node x nnodes)."),
             price: list[str] = typer.Option(None, "--price", help="Hosted price NAME=CNY per 1,000 tokens "
                                             "(repeatable; replaces the seed's table)."),
             probe: bool = typer.Option(True, "--probe/--no-probe", help="Time a few real steps on this machine."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Parameters, memory by component, tokens, steps, time on this hardware and hosted cost."""
    from tuneforge.advice.plan import estimate as run_estimate

    out = run_estimate(_config(target, data, model, overrides), probe, zero_stage, offload, devices, _prices(price))
    if as_json:
        print_json(out)
        return
    s = out["setup"]
    console.print(f"model {out['model']}: {out['params']:,} parameters, {out['trainable_params']:,} trainable "
                  f"({s['method']}, {s['precision']}, batch {s['batch']} x {s['gradient_accumulation']}, "
                  f"length {s['length']})", highlight=False)
    console.print(f"distributed: {s['strategy']}, {s['devices']} process(es), ZeRO stage {s['zero_stage']}"
                  f"{', offload' if s['offload'] else ''}; global batch {s['global_batch']}", highlight=False)
    table = Table(title="memory per device (GiB)")
    for col in ("weights", "gradients", "optimizer", "activations", "total"):
        table.add_column(col, justify="right")
    table.add_row(*(f"{out['memory_gib'][k]:.2f}" for k in ("weights", "gradients", "optimizer", "activations",
                                                             "total")))
    console.print(table)
    console.print(f"available: {out['available_gib']} GiB; training tokens {out['tokens']:,} x {out['epochs']} epochs; "
                  f"steps {out['steps']['per_epoch']} per epoch, {out['steps']['total']} in total", highlight=False)
    if out["seconds_estimate"] is not None:
        console.print(f"time here: ~{out['seconds_estimate'] / 60:.1f} min (probe: {out['probe_tokens_per_s']} "
                      "tokens/s)", highlight=False)
    for name, c in out["cost"].items():
        console.print(f"hosted cost {name}: {c['cost']} {c['currency']} ({c['billed_tokens']:,} tokens x "
                      f"{c['price_per_1k_tokens']}/1k)", highlight=False)
