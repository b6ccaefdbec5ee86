"""The `lite` command. Each command is a thin call into the library."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from lite_export.cli_score import LineProgressOpt, RayAddressOpt

app = typer.Typer(
    name="lite",
    help="Train, evaluate, export and serve Lite-LLM4Rec sequential recommenders.\n\n"
    "Start with `lite demo --no-serve` (trains on the built-in synthetic catalog in seconds).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)

DATA_NAMES = "synthetic|ml-1m|ml-100k|amazon|csv"
DataOpt = Annotated[str, typer.Option("--data", help=f"Data set: {DATA_NAMES}.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Directory holding the data set's files (not needed for synthetic)."
    ),
]
JsonOpt = Annotated[
    Path | None, typer.Option("--json", help="Also write the metrics to this JSON file.")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto|cpu|cuda.")]


def _print_version(value: bool) -> None:
    if value:
        from lite_export import __version__

        print(f"lite-export {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_print_version,
            is_eager=True,
            help="Print the version and exit (`lite env`: versions of everything).",
        ),
    ] = False,
) -> None:
    """Train, evaluate, export and serve Lite-LLM4Rec sequential recommenders."""


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _need(path: Path | None, kind: str, option: str = "", hint: str = "") -> None:
    """Fail fast, before any heavy import, when ``path`` is missing or of the wrong kind:
    ``kind`` "checkpoint" or "artifact" (read by lite_export.artifact: one place tells them
    apart), or "dir" (an existing directory, named by ``option``; ``hint`` says what it holds)."""
    if path is None:
        return
    if kind == "dir":
        if not path.is_dir():
            what = "is not a directory" if path.exists() else "does not exist"
            _fail(f"{option} {path} {what}; {hint or 'pass an existing directory'}")
        return
    from lite_export.artifact import read_checkpoint_meta, read_manifest

    try:
        (read_checkpoint_meta if kind == "checkpoint" else read_manifest)(path)
    except ValueError as exc:
        _fail(str(exc))


def _check_out(path: Path, kind: str, force: bool, sources=()) -> None:
    """Fail fast, before any long work, when writing the ``kind`` directory (artifact,
    checkpoint) at ``path`` could lose something (lite_export.artifact.check_output_dir)."""
    from lite_export.artifact import OutputDirError, check_output_dir

    try:
        check_output_dir(path, kind, force=force, sources=sources)
    except OutputDirError as exc:
        _fail(str(exc))


def _check_json_out(path: Path | None, tool: str) -> dict:
    """Fail fast when ``--json FILE`` would overwrite a file lite-export did not write (a user's
    file, a checkpoint's config.json); returns the marker to put in the JSON written there."""
    from lite_export.artifact import WRITTEN_BY_KEY, written_by, written_by_lite_export

    if path is not None and (path.is_dir() or (path.exists() and not written_by_lite_export(path))):
        what = "is a directory" if path.is_dir() else "exists and was not written by lite-export"
        _fail(f"--json {path} {what}; choose another --json path, or move it away yourself")
    return {WRITTEN_BY_KEY: written_by(tool)}


def _metrics_table(rows: dict[str, dict], title: str):
    from rich.table import Table

    from lite_export.model.metrics import DEFAULT_KS

    table = Table(title=title)
    table.add_column("model")
    for k in DEFAULT_KS:
        table.add_column(f"Recall@{k}", justify="right")
    for k in DEFAULT_KS:
        table.add_column(f"NDCG@{k}", justify="right")
    for name, m in rows.items():
        table.add_row(
            name,
            *[f"{m[f'recall@{k}']:.4f}" for k in DEFAULT_KS],
            *[f"{m[f'ndcg@{k}']:.4f}" for k in DEFAULT_KS],
        )
    return table


@app.command(
    epilog="Examples:\n\n"
    "  lite train --data synthetic --preset tiny --out ckpt\n\n"
    "  lite train --data ml-1m --data-dir path/to/ml-1m --preset small --out ckpt-ml1m\n\n"
    "  lite train --data amazon --data-dir data/beauty --preset sasrec --out ckpt-sasrec\n\n"
    "  accelerate launch --num_processes 2 -m lite_export.cli train --data ml-1m --data-dir DIR --out ckpt"
)
def train(
    out: Annotated[Path, typer.Option("--out", help="Checkpoint directory to write.")],
    data: DataOpt = "synthetic",
    data_dir: DataDirOpt = None,
    preset: Annotated[
        str, typer.Option(help="tiny|small|sasrec (model + training defaults).")
    ] = "tiny",
    item_llm: Annotated[
        str | None,
        typer.Option(
            "--item-llm", help="Item LLM: path, hub id, all-minilm-l6-v2, tiny-random, or none."
        ),
    ] = None,
    rec_llm: Annotated[
        str | None, typer.Option("--rec-llm", help="Pretrained rec LLM backbone (path or hub id).")
    ] = None,
    rec_arch: Annotated[
        str | None, typer.Option(help="llama|qwen2|gpt2 when no --rec-llm.")
    ] = None,
    d_model: Annotated[int | None, typer.Option(help="Rec LLM width.")] = None,
    n_layers: Annotated[int | None, typer.Option(help="Rec LLM layers.")] = None,
    n_heads: Annotated[int | None, typer.Option(help="Rec LLM attention heads.")] = None,
    dropout: Annotated[
        float | None, typer.Option(help="Dropout on the item inputs and attention.")
    ] = None,
    resid_dropout: Annotated[
        float | None,
        typer.Option(
            help="Dropout on each attention and MLP block's output before the residual add "
            "(SASRec's); default: the architecture's (gpt2: --dropout; llama, qwen2: none)."
        ),
    ] = None,
    item_fusion: Annotated[
        str | None,
        typer.Option(
            help="sum|gate: how the item-LLM vector and the item-id embedding are combined "
            "(gate: a learned per-dimension mix)."
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option(
            help="id|text|text+id: the head's item rows are learned per item (id), computed "
            "from the item-LLM vector (text: items added later score from their text), or "
            "both (text+id: text row + learned residual)."
        ),
    ] = None,
    head_residual_dropout: Annotated[
        float | None,
        typer.Option(
            help="With --head text+id: drop each item's residual row with this probability in "
            "training, so the text rows alone score well."
        ),
    ] = None,
    head_match: Annotated[
        bool | None,
        typer.Option(
            "--head-match/--no-head-match",
            help="With --head text or text+id: the head also scores the cosine between each "
            "item's item-LLM vector and the history's, with a learned scale (better for items "
            "the model never saw; the user vector and head rows grow by the item-LLM width).",
        ),
    ] = None,
    head_cold_scale: Annotated[
        bool | None,
        typer.Option(
            "--head-cold-scale/--no-head-cold-scale",
            help="With --head text+id --head-match --head-residual-dropout P: items with no "
            "learned residual (held out of training, or added by `lite catalog add`) get their "
            "own text-match scale and bias offset, learned on the rows training drops.",
        ),
    ] = None,
    cold_calibration: Annotated[
        float | None,
        typer.Option(
            help="With --head-cold-scale: hold this fraction of the training items out of "
            "training (e.g. 0.05) and set the cold scale and bias to what ranks them best on "
            "the validation users whose target they are, within --cold-calibration-warm-cost.",
        ),
    ] = None,
    cold_calibration_warm_cost: Annotated[
        float | None,
        typer.Option(
            help="The fraction of the other validation users' NDCG@10 that --cold-calibration "
            "may give up (default 0.02)."
        ),
    ] = None,
    max_history: Annotated[
        int | None, typer.Option(help="Positions the model sees (default: the data set's).")
    ] = None,
    finetune_item_llm: Annotated[bool, typer.Option(help="Fine-tune the item LLM too.")] = False,
    cold_items: Annotated[
        float | None,
        typer.Option(
            help="Cold-start protocol: hold this fraction of the items (e.g. 0.1) out of "
            "training and validation; the test then reports held-out (cold) and warm targets."
        ),
    ] = None,
    cold_seed: Annotated[int, typer.Option(help="Seed of the held-out item draw.")] = 0,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Sequences per batch (per process).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    weight_decay: Annotated[
        float | None, typer.Option(help="AdamW weight decay (not on biases and norms).")
    ] = None,
    label_smoothing: Annotated[
        float | None, typer.Option(help="Label smoothing of the cross-entropy targets.")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    loss: Annotated[str | None, typer.Option(help="full|sampled softmax.")] = None,
    num_negatives: Annotated[int | None, typer.Option(help="Negatives for --loss sampled.")] = None,
    max_train_seconds: Annotated[
        float | None,
        typer.Option(
            help="Wall-time budget of the whole command, from its start: data loading, item-LLM "
            "encoding, training, every validation pass, the final test evaluation and saving "
            "(a validation pass and the test are timed up front and training stops early "
            "enough; the LR schedule anneals within the training part). Under --resume: of the "
            "whole run, the interrupted command's time included."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (runs are deterministic under it).")] = 0,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = None,
    progress: Annotated[
        bool,
        typer.Option(
            help="Show progress: bars in a terminal, else a line every LITE_PROGRESS_INTERVAL "
            "seconds (default 5) on stderr."
        ),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace a lite-export checkpoint already at --out (atomically, once the new "
            "one is written); anything else there is never replaced."
        ),
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the run saved in this checkpoint (written when a run is interrupted, "
            "or with --keep-training-state) into --out, a new directory. The model, data and "
            "training settings come from the checkpoint; only --epochs, --patience, "
            "--max-train-seconds, --data-dir (where the data now lives), --device, --progress, "
            "--json and --keep-training-state may be given."
        ),
    ] = None,
    keep_training_state: Annotated[
        bool,
        typer.Option(
            help="Keep training_state/ (optimizer moments, current weights, RNG states: about 3x "
            "the model's size) in a completed run's checkpoint too, so --resume can train it "
            "further. Interrupted runs always keep it."
        ),
    ] = False,
    ctx: typer.Context = None,
) -> None:
    """Train a Lite-LLM4Rec model (or its SASRec peer) and write a checkpoint directory.

    Ctrl-C (SIGINT) or SIGTERM stops after the current step, saves the best checkpoint so far
    with its training state to --out and prints the `lite train --resume` command that
    continues the run; a second Ctrl-C aborts at once. Exit code 130 (SIGINT) or 143 (SIGTERM).
    """
    started = _COMMAND_START or time.perf_counter()
    hint = f"pass the directory holding the {data} data set's files"
    _need(data_dir, "dir", "--data-dir", hint)  # before torch is imported
    _check_out(out, "checkpoint", force, sources=[data_dir, resume])  # before any training
    json_mark = _check_json_out(json_out, "lite train")
    if resume is not None:
        _need(resume, "checkpoint")
        _check_resume_options(ctx, resume)
    from accelerate import Accelerator
    from rich.console import Console

    from lite_export.artifact import CheckpointError, OutputDirError
    from lite_export.model.budget import RunClock, budget_summary
    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.stopping import StopRequest, signal_name
    from lite_export.model.train import reuse_freed_memory
    from lite_export.model.train_state import TrainingStateError
    from lite_export.model.workflow import (
        DataSpec,
        load_split,
        most_popular_metrics,
        pick_device,
        train_checkpoint,
        write_json,
    )
    from lite_export.progress import plural

    reuse_freed_memory()  # CPU steps ~35% faster on ML-1M (see its docstring)
    stop = StopRequest()
    try:
        with stop.install():
            try:
                if resume is not None:
                    spec, model_cfg, train_cfg, label = _resume_config(
                        resume, data_dir, epochs, patience, max_train_seconds
                    )
                else:
                    spec = DataSpec(
                        data,
                        str(data_dir.resolve()) if data_dir else None,
                        cold_items=cold_items or 0.0,
                        cold_seed=cold_seed,
                    )
                    label = preset
                acc = Accelerator(**pick_device(device))
                ds, split = load_split(spec)
                if resume is None:
                    overrides = dict(
                        rec_llm=rec_llm,
                        rec_arch=rec_arch,
                        d_model=d_model,
                        n_layers=n_layers,
                        n_heads=n_heads,
                        dropout=dropout,
                        resid_dropout=resid_dropout,
                        item_fusion=item_fusion,
                        head=head,
                        head_residual_dropout=head_residual_dropout,
                        head_match=head_match,
                        head_cold_scale=head_cold_scale,
                        max_history=max_history or ds.max_history,
                    )
                    model_cfg = LiteConfig.from_name(preset, **overrides)
                    if item_llm is not None:
                        model_cfg.item_llm = None if item_llm.lower() == "none" else item_llm
                    model_cfg.finetune_item_llm = finetune_item_llm or model_cfg.finetune_item_llm
                    model_cfg.__post_init__()
                    train_cfg = TrainConfig.from_name(
                        preset,
                        epochs=epochs,
                        batch_size=batch_size,
                        lr=lr,
                        weight_decay=weight_decay,
                        label_smoothing=label_smoothing,
                        patience=patience,
                        loss=loss,
                        num_negatives=num_negatives,
                        max_train_seconds=max_train_seconds,
                        seed=seed,
                        cold_calibration=cold_calibration,
                        cold_calibration_warm_cost=cold_calibration_warm_cost,
                    )
            except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
                _fail(str(exc))
            clock = RunClock(train_cfg.max_train_seconds, start=started)
            clock.add("load", time.perf_counter() - started)  # imports and the data set
            try:
                model, result, test = train_checkpoint(
                    spec,
                    model_cfg,
                    train_cfg,
                    out,
                    accelerator=acc,
                    progress=progress,
                    data=(ds, split),
                    force=force,
                    sources=[data_dir],
                    resume=resume,
                    stop=stop,
                    clock=clock,
                    keep_state=keep_training_state,
                )
            except OutputDirError as exc:  # --out changed while training: the message says where
                _fail(str(exc))
            except (TrainingStateError, CheckpointError) as exc:  # --resume CKPT is unusable
                _fail(str(exc))
    except KeyboardInterrupt:
        # a second Ctrl-C (or one before training started): nothing is saved
        typer.secho(
            f"aborted by {signal_name(stop.aborted or stop.signum or 2)}; nothing was saved "
            f"to {out}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(stop.exit_code if (stop.aborted or stop.signum) else 130) from None
    if result.interrupted is not None:
        if acc.is_main_process:
            _report_interrupted(out, result, acc.num_processes)
        raise typer.Exit(128 + result.interrupted)
    if acc.is_main_process:
        pop = most_popular_metrics(split)
        rows = {f"{label} ({out.name})": test, "most-popular": pop}
        for which, metrics in result.test_by_target.items():
            n = len(split.test_subset(which))
            rows[f"{which} ({n:,} users)"] = metrics
        Console().print(
            _metrics_table(
                rows,
                f"{ds.name} test — full ranking, history masked"
                + (
                    f"; cold = target among the {len(split.cold_items):,} held-out items"
                    if split.cold_items
                    else ""
                ),
            )
        )
        state = (
            "; training state kept (--resume can train it further)" if keep_training_state else ""
        )
        print(
            f"checkpoint written to {out}  ({result.train_seconds:.1f}s training, "
            f"{plural(result.epochs_run, 'epoch')}, {_STOP_REASONS.get(result.stop_reason, '')})"
            f"{state}"
        )
        print(budget_summary(clock))
        if json_out:
            write_json(
                json_out,
                {**json_mark, "test": test, "most_popular": pop, "train": result.to_dict()},
            )


_STOP_REASONS = {
    "epochs": "all epochs done",
    "patience": "early stopping",
    "budget": "time budget spent",
}


def _check_resume_options(ctx, resume: Path) -> None:
    """Refuse, under --resume, every option that would change the model, data or training."""
    allowed = {
        "out",
        "data_dir",
        "epochs",
        "patience",
        "max_train_seconds",
        "device",
        "json_out",
        "progress",
        "force",
        "resume",
        "keep_training_state",
    }
    given = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)  # by name: typer vendors its own click
        if param.name not in allowed and getattr(source, "name", "") in (
            "COMMANDLINE",
            "ENVIRONMENT",
        ):
            given.append(param.opts[0])
    if given:
        _fail(
            f"{', '.join(given)} cannot be given with --resume: the model, data and training "
            f"settings come from {resume} so that the run continues exactly. Drop them; only "
            "--epochs, --patience and --max-train-seconds may change (to train longer), and "
            "--data-dir (where the data now lives), --device, --progress, --json, "
            "--keep-training-state. To train with other settings, start a new run."
        )


def _resume_config(resume: Path, data_dir, epochs, patience, max_train_seconds):
    """(data spec, model config, train config, label) of the run saved in ``resume``."""
    from lite_export.artifact import read_checkpoint_meta
    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.train_state import read_state_meta
    from lite_export.model.workflow import DataSpec
    from lite_export.progress import plural

    meta = read_checkpoint_meta(resume)
    state = read_state_meta(resume)
    stored = meta.get("data", {})
    spec = DataSpec.from_stored(stored, data_dir=str(data_dir.resolve()) if data_dir else None)
    model_cfg = LiteConfig.from_dict(meta["model"])
    values = dict(meta.get("train") or state.get("train") or {})
    for name, value in (
        ("epochs", epochs),
        ("patience", patience),
        ("max_train_seconds", max_train_seconds),
    ):
        if value is not None:
            values[name] = value
    train_cfg = TrainConfig(**values)
    loop = state["loop"]
    finished = state.get("test_done") and not (loop["batches_done"] or loop["epoch_trained"])
    if finished:
        done = loop["epoch"] - 1
        why = {
            "epochs": f"it trained all {plural(done, 'epoch')}: pass --epochs N with N > {done}",
            "patience": "early stopping ended it after "
            f"{plural(loop['bad_epochs'], 'epoch')} without a better validation NDCG@10: pass "
            f"--patience N with N > {loop['bad_epochs']} (and --epochs if needed)",
            "budget": f"its time budget ({train_cfg.max_train_seconds} s) was spent: pass a "
            f"larger --max-train-seconds (the run has used {state['elapsed_seconds']:.0f} s)",
        }.get(loop.get("stop_reason"), "")
        blocked = (
            (loop.get("stop_reason") == "epochs" and train_cfg.epochs <= done)
            or (loop.get("stop_reason") == "patience" and train_cfg.patience <= loop["bad_epochs"])
            or (
                loop.get("stop_reason") == "budget"
                and train_cfg.max_train_seconds is not None
                and train_cfg.max_train_seconds <= state["elapsed_seconds"]
            )
        )
        if blocked:
            raise ValueError(f"{resume} is a completed run; to train it further, {why}")
    label = f"resumed {resume.name}"
    return spec, model_cfg, train_cfg, label


def _report_interrupted(out: Path, result, num_processes: int) -> None:
    from lite_export.model.stopping import signal_name
    from lite_export.model.workflow import describe_state, resume_command

    state = result.state
    best = (
        f"the best weights so far (epoch {result.best_epoch}, valid NDCG@10 "
        f"{result.best_valid['ndcg@10']:.4f})"
        if result.best_epoch
        else "the current weights (no epoch was validated yet)"
    )
    typer.secho(
        f"interrupted by {signal_name(result.interrupted)}: saved {best} and the training state "
        f"to {out}\n  {describe_state(state, out).replace('resuming', 'stopped in', 1)}\n"
        f"  it is a normal checkpoint (lite eval / lite export accept it)\n"
        f"continue with: {resume_command(out, num_processes)}",
        fg=typer.colors.YELLOW,
        err=True,
    )


@app.command(
    name="eval",
    epilog="Examples:\n\n"
    "  lite eval ckpt\n\n"
    "  lite eval ckpt --split valid --json metrics.json\n\n"
    "  lite eval ckpt-ml1m --data ml-1m --data-dir path/to/ml-1m",
)
def eval_cmd(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint directory written by `lite train`.")],
    data: Annotated[
        str | None, typer.Option("--data", help=f"{DATA_NAMES} (default: the checkpoint's).")
    ] = None,
    data_dir: DataDirOpt = None,
    split_name: Annotated[str, typer.Option("--split", help="test|valid.")] = "test",
    json_out: JsonOpt = None,
    device: DeviceOpt = "auto",
    progress: LineProgressOpt = True,
) -> None:
    """Evaluate a checkpoint: Recall/NDCG@{5,10,20}, full ranking, history masked, beside most-popular."""
    _need(ckpt, "checkpoint")  # before torch is imported
    _need(data_dir, "dir", "--data-dir", "pass the directory holding the data set's files")
    json_mark = _check_json_out(json_out, "lite eval")
    import torch
    from rich.console import Console

    from lite_export.model.lite_llm4rec import LiteLLM4Rec, read_checkpoint_meta
    from lite_export.model.metrics import PROTOCOL
    from lite_export.model.workflow import (
        DataSpec,
        evaluate_split,
        load_split,
        most_popular_metrics,
        write_json,
    )
    from lite_export.progress import enabled as progress_enabled

    try:
        meta = read_checkpoint_meta(ckpt)
        stored = meta.get("data", {})
        spec = DataSpec.from_stored(
            stored, name=data, data_dir=str(data_dir.resolve()) if data_dir else None
        )
        dev = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        model = LiteLLM4Rec.from_pretrained(ckpt, device=dev)
        ds, split = load_split(spec)
        if ds.num_items != model.config.num_items or list(ds.item_ids) != model.catalog.ids:
            _fail(
                f"the data set {spec.name!r} has a different item catalog ({ds.num_items} items) "
                f"from the checkpoint ({model.config.num_items}); evaluate on the data it was trained on"
            )
        with progress_enabled(progress):
            metrics = evaluate_split(
                model, split, split_name, device=dev, desc=f"evaluating {ckpt.name} ({split_name})"
            )
        pop = most_popular_metrics(split, split_name)
        by_target = {}
        if split.cold_items and split_name == "test":  # the cold-start protocol it trained under
            by_target = {
                which: evaluate_split(model, split, f"test_{which}", device=dev)
                for which in ("cold", "warm")
            }
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        _fail(str(exc))
    rows = {ckpt.name: metrics, "most-popular": pop}
    for which, m in by_target.items():
        rows[f"{which} ({m['users']:,} users)"] = m
    Console().print(_metrics_table(rows, f"{ds.name} {split_name} — {PROTOCOL}"))
    if json_out:
        write_json(
            json_out,
            {
                **json_mark,
                "checkpoint": str(ckpt),
                "dataset": ds.name,
                "split": split_name,
                "protocol": PROTOCOL,
                "metrics": metrics,
                "most_popular": pop,
                **({"by_target": by_target} if by_target else {}),
            },
        )
        print(f"metrics written to {json_out}")


@app.command(
    epilog="Examples:\n\n"
    "  lite demo\n\n"
    "  lite demo --no-serve\n\n"
    "  lite demo --no-serve --epochs 2\n\n"
    "  lite demo --out demo --port 8000      # keep demo/ckpt and demo/artifact"
)
def demo(
    serve: Annotated[
        bool,
        typer.Option(
            "--serve/--no-serve",
            help="Serve the artifact over HTTP afterwards, until Ctrl-C (needs the serve and "
            "onnx extras); --no-serve stops after the in-process checks.",
        ),
    ] = True,
    out: Annotated[
        Path | None,
        typer.Option(help="Keep the checkpoint (OUT/ckpt) and artifact (OUT/artifact) here."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the tiny preset's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    port: Annotated[
        int | None, typer.Option(help="Port on 127.0.0.1 to serve on \\[default: a free one].")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace the checkpoint and artifact of an earlier `lite demo --out OUT` "
            "(only lite-export's own: anything else there is never replaced)."
        ),
    ] = False,
) -> None:
    """Train on the built-in synthetic catalog, evaluate, export and validate an artifact, then
    serve it and show recommendations over HTTP (Ctrl-C stops)."""
    import tempfile

    from rich.console import Console

    from lite_export import demo as d
    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.metrics import PROTOCOL
    from lite_export.model.workflow import (
        DataSpec,
        load_split,
        most_popular_metrics,
        train_checkpoint,
    )
    from lite_export.progress import plural

    can_export = not d.missing(d.EXPORT_MODULES)
    if serve:
        lacking = d.missing(d.SERVE_MODULES + d.EXPORT_MODULES)
        if lacking:
            _fail(
                f"lite demo exports the model and serves it over HTTP, which needs "
                f'{", ".join(lacking)}: pip install -e ".[serve,onnx]" (or '
                'pip install "lite-export[serve,onnx]"), or run `lite demo --no-serve` to train, '
                "evaluate and recommend without serving"
            )
    if out is not None:  # before anything is trained
        _check_out(out / "ckpt", "checkpoint", force)
        if can_export:
            _check_out(out / "artifact", "artifact", force, sources=[out / "ckpt"])
    console = Console()
    spec = DataSpec("synthetic")
    ds, split = load_split(spec)
    model_cfg = LiteConfig.from_name("tiny", max_history=ds.max_history)
    train_cfg = TrainConfig.from_name("tiny", epochs=epochs, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = out or Path(tmp)
        ckpt, art = root / "ckpt", root / "artifact"
        model, result, test = train_checkpoint(
            spec, model_cfg, train_cfg, ckpt, data=(ds, split), force=force
        )
        pop = most_popular_metrics(split)
        console.print(
            _metrics_table(
                {"Lite-LLM4Rec (tiny)": test, "most-popular": pop}, f"synthetic test — {PROTOCOL}"
            )
        )
        console.print(
            f"trained in {result.train_seconds:.1f}s ({plural(result.epochs_run, 'epoch')})"
        )
        users = d.sample_users(ds, split)
        if not can_export:
            d.recommend_tables(model, ds, users, console, what="checkpoint, in process")
            console.print(
                "[yellow]export skipped:[/yellow] lite export needs "
                f'{", ".join(d.missing(d.EXPORT_MODULES))} (pip install -e ".\\[onnx]"); '
                "with it, lite demo also exports, validates and serves the model",
                soft_wrap=True,
            )
            return
        import lite_export
        from lite_export.exporters.onnx import ExportOptions, export_artifact

        t = time.perf_counter()
        export_artifact(ckpt, art, ExportOptions(k=20), force=force, log=None)
        rec = lite_export.load(art, engine="auto")  # every file's sha256 checked
        probe = [[ds.item_ids[i] for i in split.test[u][0]] for u in range(32)]
        check = d.compare(model, rec, probe)
        console.print(
            f"exported and loaded {art if out else 'the artifact'} in {time.perf_counter() - t:.1f}s "
            f"(checksums verified, {rec.name} engine): top-{check['k']} identical to the "
            f"checkpoint's for {check['identical_rows']}/{check['users']} test users, "
            f"max |score diff| {check['max_abs_score_diff']:.1e} (tolerance {d.TOLERANCE:.0e})",
            soft_wrap=True,
        )
        if not check["ok"]:
            _fail("the exported artifact does not reproduce the checkpoint's scores", code=1)
        if not serve:
            d.recommend_tables(rec, ds, users, console, what=f"{rec.name} engine, in process")
            if out:
                console.print(f"serve it with: lite serve {art}", soft_wrap=True)
            return
        del rec
        code = d.serve_until_interrupted(art, port or d.free_port(), users, console)
    if code:
        raise typer.Exit(code)


def _shape(text: str | None, default: tuple[int, int] | None) -> tuple[int, int] | None:
    if text is None:
        return default
    try:
        b, length = (int(x) for x in text.split(","))
    except ValueError:
        _fail(f"a shape must be 'BATCH,HISTORY' like '16,50', got {text!r}")
    return b, length


TRITON_BATCHING_DEFAULTS = {
    "max_batch_size": 64,
    "preferred_batch_size": [8, 16, 32],
    "max_queue_delay_microseconds": 500,
}


def _triton_batching(
    config: Path | None,
    max_batch_size: int | None,
    preferred: list[int] | None,
    delay_us: int | None,
) -> dict:
    """Triton dynamic-batching values: defaults < --triton-config (lite tune's output) < flags."""
    import json as _json

    values = dict(TRITON_BATCHING_DEFAULTS)
    source = "defaults"
    if config is not None:
        try:
            data = _json.loads(Path(config).read_text())
        except FileNotFoundError:
            _fail(
                f"--triton-config {config} does not exist; write it with `lite tune ART --p99-ms X`"
            )
        except (OSError, ValueError) as exc:
            _fail(f"--triton-config {config} is not valid JSON ({exc})")
        if isinstance(data, dict) and "triton" in data:
            data = data["triton"]
        elif isinstance(data, dict) and data.get("met") is False:
            data = None
        if not isinstance(data, dict) or not set(TRITON_BATCHING_DEFAULTS) & set(data):
            _fail(
                f"--triton-config {config} holds no Triton batching values (max_batch_size, "
                "preferred_batch_size, max_queue_delay_microseconds); if it is a tune.json, that "
                "lite tune run met no target: tune again with a reachable --p99-ms"
            )
        unknown = sorted(k for k in data if not k.startswith("_") and k not in values)
        if unknown:
            _fail(
                f"--triton-config {config}: unknown keys {unknown}; known keys: "
                f"{sorted(TRITON_BATCHING_DEFAULTS)}"
            )
        values.update({k: v for k, v in data.items() if k in values})
        source = str(config)
    if max_batch_size is not None:
        values["max_batch_size"] = max_batch_size
    if preferred is not None:
        values["preferred_batch_size"] = preferred
    if delay_us is not None:
        values["max_queue_delay_microseconds"] = delay_us
    mb, pref, delay = (
        values["max_batch_size"],
        values["preferred_batch_size"],
        values["max_queue_delay_microseconds"],
    )
    if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
        _fail(f"Triton max_batch_size must be an integer >= 1, got {mb!r}")
    if (
        not isinstance(pref, list)
        or not pref
        or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in pref)
    ):
        _fail(f"Triton preferred_batch_size must be a list of integers >= 1, got {pref!r}")
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        _fail(f"Triton max_queue_delay_microseconds must be an integer >= 0, got {delay!r}")
    too_big = [p for p in pref if p > mb]
    if too_big:
        typer.secho(
            f"note: Triton preferred batch sizes {too_big} exceed max_batch_size {mb}; left out",
            err=True,
        )
    return {**values, "from": source}


@app.command(
    name="export",
    epilog="Examples:\n\n"
    "  lite export ckpt --out art\n\n"
    "  lite export ckpt --out art --precision fp16 --k 50 --force\n\n"
    "  lite export ckpt --out art --catalog-precision int8\n\n"
    "  lite export ckpt --out art --format tensorrt --opt-shape 16,50 --max-shape 256,200\n\n"
    "  lite export ckpt --out art --format triton --triton-max-batch-size 32\n\n"
    "  lite export ckpt --out art --format triton --triton-config tune.json",
)
def export_cmd(
    ckpt: Annotated[Path, typer.Argument(help="Checkpoint directory written by `lite train`.")],
    out: Annotated[Path, typer.Option("--out", help="Artifact directory to write.")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="onnx|tensorrt|triton (tensorrt adds model.plan; triton adds the triton/ "
            "Triton Inference Server model repository).",
        ),
    ] = "onnx",
    precision: Annotated[
        str, typer.Option(help="fp32|fp16|bf16 compute precision of the graphs.")
    ] = "fp32",
    k: Annotated[
        int, typer.Option("--k", help="Top-K fixed in the graph; engines serve any k <= K.")
    ] = 100,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace a lite-export artifact already at --out (atomically); anything else "
            "there, the checkpoint and a directory holding it are never replaced."
        ),
    ] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    external_data_threshold: Annotated[
        int, typer.Option(help="Bytes of weights above which ONNX external data is used.")
    ] = 1_500_000_000,
    optimize: Annotated[
        bool, typer.Option(help="Also write ONNX Runtime's optimised graph.")
    ] = True,
    min_shape: Annotated[
        str | None,
        typer.Option(
            help="Input profile min BATCH,HISTORY (the TensorRT plan's; recorded in "
            "manifest.json, kept by every engine) \\[default: 1,1]."
        ),
    ] = None,
    opt_shape: Annotated[
        str | None,
        typer.Option(help="Input profile opt BATCH,HISTORY \\[default: 16,max_history]."),
    ] = None,
    max_shape: Annotated[
        str | None,
        typer.Option(
            help="Input profile max BATCH,HISTORY; larger batches are split "
            "\\[default: 256,max_history]."
        ),
    ] = None,
    max_exclude: Annotated[
        int | None,
        typer.Option(
            help="Most ids one history excludes inside the graph (exclude_ids width in the "
            "profile); longer lists are chunked with identical results "
            "\\[default: min(4096, catalog size)]."
        ),
    ] = None,
    catalog_precision: Annotated[
        str | None,
        typer.Option(
            help="int8|fp8: also store the head as a quantized catalog with per-row scales "
            "(catalog.safetensors, for the PyTorch engine). int8 also makes model.onnx rank "
            "with ONNX Runtime's integer matmul and an exact re-rank: the same top-K as the "
            "fp32 graph, faster on CPUs. Not for --format tensorrt."
        ),
    ] = None,
    catalog_candidates: Annotated[
        int | None,
        typer.Option(
            help="int8 catalog: candidates re-ranked exactly per user; rows the bound cannot "
            "settle are ranked again in full precision \\[default: calibrated on probe users]."
        ),
    ] = None,
    items_encoder: Annotated[
        bool,
        typer.Option(
            "--items-encoder",
            help="Also export the item LLM to ART/items_encoder/ (ONNX, validated; the "
            "optimum extra), so `lite catalog add` encodes new item text from the artifact "
            "alone.",
        ),
    ] = False,
    timing_cache: Annotated[
        Path | None, typer.Option(help="TensorRT timing cache file (read and updated).")
    ] = None,
    triton_max_batch_size: Annotated[
        int | None,
        typer.Option(
            help="Triton max_batch_size of both models (--format triton) \\[default: 64]."
        ),
    ] = None,
    triton_preferred_batch_sizes: Annotated[
        str | None,
        typer.Option(
            help="Triton dynamic_batching preferred_batch_size, comma-separated (--format "
            "triton) \\[default: 8,16,32]."
        ),
    ] = None,
    triton_max_queue_delay_us: Annotated[
        int | None,
        typer.Option(
            help="Triton dynamic_batching max_queue_delay_microseconds (--format triton) "
            "\\[default: 500]."
        ),
    ] = None,
    triton_config: Annotated[
        Path | None,
        typer.Option(
            help="Triton batching values from `lite tune` (its tune.json, or a JSON object with "
            "max_batch_size, preferred_batch_size, max_queue_delay_microseconds); the "
            "--triton-* flags override it (--format triton)."
        ),
    ] = None,
    triton_instances: Annotated[
        int, typer.Option(help="Triton instance_group count of each model (--format triton).")
    ] = 1,
    triton_tensorrt: Annotated[
        bool,
        typer.Option(
            help="Triton: run the onnxruntime model on GPU instances with the TensorRT execution "
            "accelerator (FP16) (--format triton)."
        ),
    ] = False,
    triton_gpu: Annotated[
        bool,
        typer.Option(
            help="Triton: KIND_GPU instances; the python model then ranks with the fused kernel "
            "where the server's Python has lite-export and torch (--format triton)."
        ),
    ] = False,
    triton_trt_cache: Annotated[
        str | None,
        typer.Option(
            help="Triton --triton-tensorrt: absolute directory on the server where ONNX "
            "Runtime keeps the TensorRT engines it builds \\[default: /tmp/lite-export-trt-cache]."
        ),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            help="Show the validation's progress: a bar in a terminal, else a line every "
            "LITE_PROGRESS_INTERVAL seconds (default 5) on stderr."
        ),
    ] = True,
) -> None:
    """Export a checkpoint to a validated ONNX artifact (frozen item embeddings, top-K in graph)."""
    if fmt not in ("onnx", "tensorrt", "triton"):
        _fail(f"--format must be onnx, tensorrt or triton, got {fmt!r}")
    post_build = None
    triton_flags = {
        "--triton-config": triton_config,
        "--triton-max-batch-size": triton_max_batch_size,
        "--triton-preferred-batch-sizes": triton_preferred_batch_sizes,
        "--triton-max-queue-delay-us": triton_max_queue_delay_us,
        "--triton-trt-cache": triton_trt_cache,
    }
    if fmt != "triton" and any(v is not None for v in triton_flags.values()):
        given = [k for k, v in triton_flags.items() if v is not None]
        _fail(f"{', '.join(given)} apply to --format triton; add --format triton or drop them")
    if fmt == "triton":
        batching = _triton_batching(
            triton_config,
            triton_max_batch_size,
            _ints(triton_preferred_batch_sizes, "--triton-preferred-batch-sizes"),
            triton_max_queue_delay_us,
        )
        triton_max_batch_size = batching["max_batch_size"]
        if triton_instances < 1:
            _fail("--triton-instances must be >= 1")
        if triton_trt_cache is not None and not triton_trt_cache.startswith("/"):
            _fail(
                f"--triton-trt-cache must be an absolute path on the Triton server, got "
                f"{triton_trt_cache!r}"
            )

        def post_build(tmp: Path, manifest: dict) -> list[str]:
            # inside the export's temporary directory: the repository is checksummed in the
            # manifest and published atomically with the rest of the artifact
            from lite_export.exporters.triton_server import build_model_repository

            files = build_model_repository(
                tmp,
                tmp / "triton",
                manifest,
                max_batch_size=triton_max_batch_size,
                preferred_batch_sizes=batching["preferred_batch_size"],
                max_queue_delay_us=batching["max_queue_delay_microseconds"],
                instance_count=triton_instances,
                kind="KIND_GPU" if triton_tensorrt or triton_gpu else "KIND_CPU",
                tensorrt_accelerator=triton_tensorrt,
                **({"tensorrt_cache_dir": triton_trt_cache} if triton_trt_cache else {}),
            )
            manifest["triton"] = {
                "repository": "triton",
                "models": {"lite": "python", "lite_onnx": "onnxruntime"},
                "max_batch_size": triton_max_batch_size,
                "preferred_batch_size": [
                    s for s in batching["preferred_batch_size"] if s <= triton_max_batch_size
                ]
                or [triton_max_batch_size],
                "max_queue_delay_microseconds": batching["max_queue_delay_microseconds"],
                "batching_from": batching["from"],
                "instances": triton_instances,
                "tensorrt_accelerator": triton_tensorrt,
                "kind": "KIND_GPU" if triton_tensorrt or triton_gpu else "KIND_CPU",
            }
            return [f"triton/{f}" for f in files]

    shapes = {
        "min_shape": _shape(min_shape, None),
        "opt_shape": _shape(opt_shape, None),
        "max_shape": _shape(max_shape, None),
    }
    if max_exclude is not None and max_exclude < 1:
        _fail(f"--max-exclude must be >= 1 (longer lists are chunked), got {max_exclude}")
    if catalog_precision is not None and catalog_precision not in ("int8", "fp8"):
        _fail(f"--catalog-precision must be int8 or fp8, got {catalog_precision!r}")
    if catalog_precision == "int8" and fmt == "tensorrt":
        _fail(
            "--catalog-precision int8 ranks with ONNX Runtime's integer matmul "
            "(DynamicQuantizeLinear, MatMulInteger), which TensorRT's ONNX parser does not "
            "support: export --format tensorrt without it, or use --format onnx / triton"
        )
    _need(ckpt, "checkpoint")  # after the option checks, before torch is imported
    inputs = [ckpt, timing_cache, triton_config]
    _check_out(out, "artifact", force, sources=inputs)
    if fmt == "tensorrt":
        from lite_export.exporters.tensorrt import tensorrt_available

        if not tensorrt_available():
            _fail(
                "--format tensorrt needs TensorRT and an NVIDIA GPU on this host: "
                'pip install "lite-export[gpu]" on a GPU machine (the ONNX export works anywhere)'
            )

        def post_build(tmp: Path, manifest: dict) -> list[str]:
            from lite_export.engines.profile import InputProfile
            from lite_export.exporters.tensorrt import build_engine

            # the plan gets the profile manifest.json records: item_ids and exclude_ids each
            # with their own widths (--max-exclude), the engines keep every call inside it
            lo, opt, hi = InputProfile.from_manifest(manifest).tensorrt_shapes()
            build_engine(
                tmp / "model.onnx",
                tmp / "model.plan",
                min_shapes=lo,
                opt_shapes=opt,
                max_shapes=hi,
                precision=precision,
                timing_cache=timing_cache,
            )
            import tensorrt as _trt

            manifest["tensorrt_build"] = {"tensorrt_version": str(_trt.__version__)}
            return ["model.plan"]

    from lite_export.exporters.onnx import ExportError, ExportOptions, export_artifact
    from lite_export.exporters.triton_server import TritonRepositoryError

    opts = ExportOptions(
        k=k,
        precision=precision,
        opset=opset,
        external_data_threshold=external_data_threshold,
        optimize=optimize,
        max_exclude=max_exclude,
        catalog_precision=catalog_precision,
        catalog_candidates=catalog_candidates,
        items_encoder=items_encoder,
        **shapes,
    )
    from lite_export.progress import enabled as progress_enabled

    try:
        with progress_enabled(progress):
            path = export_artifact(
                ckpt, out, opts, force=force, post_build=post_build, sources=inputs[1:]
            )
    except (
        ValueError,
        FileExistsError,
        FileNotFoundError,
        ExportError,
        ImportError,
        OSError,
        TritonRepositoryError,
    ) as exc:
        _fail(str(exc))
    import json as _json

    manifest = _json.loads((path / "manifest.json").read_text())
    for graph, res in manifest["parity"].items():
        diff = res.get("max_abs_score_diff", res.get("max_abs_diff"))
        print(f"  parity {graph:<18} max |diff| {diff:.2e} (tolerance {res['tolerance']:.0e})")
    if "model.plan" in manifest.get("files", {}):
        print(
            f"  TensorRT plan: {path / 'model.plan'} ({manifest['files']['model.plan']['bytes']:,} "
            f"bytes, TensorRT {manifest.get('tensorrt_build', {}).get('tensorrt_version', '?')}); "
            "it runs only on this GPU model and TensorRT version"
        )
    cat = manifest.get("catalog")
    if cat:
        graph = cat.get("graph")
        print(
            f"  {cat['precision']} catalog: {cat['file']} ({cat['table_bytes']:,} bytes; fp32 "
            f"{cat['fp32_table_bytes']:,})"
            + (
                f"; model.onnx re-ranks {graph['candidates']} candidates exactly"
                if graph
                else "; the ONNX graphs stay fp32 (ONNX Runtime has no fp8 matmul on CPU)"
            )
        )
    prof = manifest.get("profile")
    if prof:
        print(
            "  input profile: "
            + ", ".join(f"{n} {v['min']}..{v['max']}" for n, v in prof.items())
            + " (engines split larger batches and chunk longer exclusion lists)"
        )
    if manifest.get("triton"):
        print(
            f"  Triton model repository: {path / 'triton'} (models lite [python], lite_onnx "
            "[onnxruntime]); start it with: tritonserver --model-repository "
            f"{path / 'triton'}"
        )
    trt = manifest.get("tensorrt_check", {})
    if trt.get("checked"):
        print(
            f"  TensorRT static check: {'ok' if trt.get('ok') else 'problems found'} "
            f"({trt.get('counts', {}).get('error', 0)} errors, "
            f"{trt.get('counts', {}).get('warning', 0)} warnings; details in manifest.json)"
        )


@app.command(
    epilog="Examples:\n\n"
    "  lite serve art\n\n"
    "  lite serve art --port 8080 --max-batch 64 --max-delay-ms 5 --threads 2\n\n"
    "  LITE_API_KEY=secret lite serve art --host 0.0.0.0 --config serve.json\n\n"
    "  lite serve art --cluster ray --shards 4 --replicas 2 --address auto\n\n"
    "  curl -s localhost:8000/v1/recommend -H 'Content-Type: application/json' "
    '-d \'{"history": ["1193", "661"], "k": 10}\''
)
def serve(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory written by `lite export`.")],
    host: Annotated[
        str | None, typer.Option(help="Address to listen on \\[default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port \\[default: 8000].")] = None,
    engine: Annotated[
        str | None, typer.Option(help="auto|torch|onnxruntime|tensorrt \\[default: auto].")
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(help="Most requests per engine call \\[default: 32].")
    ] = None,
    max_delay_ms: Annotated[
        float | None,
        typer.Option(
            help="Opt-in wait for fuller batches, in ms \\[default: 0: continuous batching, a "
            "request that finds the engine free runs at once]."
        ),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting for the engine before 503 + Retry-After \\[default: 256]."
        ),
    ] = None,
    busy_poll_ms: Annotated[
        float | None,
        typer.Option(
            help="After each request, poll for the next one this long instead of sleeping (no "
            "CPU wake-up delay; costs up to a core while polling) \\[default: 0: off]."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Engine intra-op threads \\[default: half the cores].")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="LITE_API_KEY",
            show_default=False,
            help="Require this key in the X-API-Key header (needed to listen beyond loopback).",
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option(help="Allow a non-loopback --host without an API key.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="Settings file (JSON, same keys as these options; flags override it)."),
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(help="Largest request body, bytes \\[default: 1000000].")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="uvicorn log level \\[default: info].")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request (costs throughput).")] = False,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="'ray': serve as a Ray Serve application with the catalog in --shards shards "
            "(needs the cluster extra; see docs/cluster.md)."
        ),
    ] = None,
    shards: Annotated[
        int | None, typer.Option(help="--cluster ray: catalog shards \\[default: 1].")
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(help="--cluster ray: replicas of every deployment \\[default: 1]."),
    ] = None,
    address: RayAddressOpt = None,
) -> None:
    """Serve an artifact over HTTP: micro-batched recommendations, health, metrics, a web page."""
    from lite_export.artifact import ArtifactError, read_manifest
    from lite_export.serving.settings import ServeSettings, SettingsError

    try:
        settings = ServeSettings.resolve(
            artifact,
            config,
            host=host,
            port=port,
            engine=engine,
            max_batch=max_batch,
            max_delay_ms=max_delay_ms,
            max_queue=max_queue,
            busy_poll_ms=busy_poll_ms,
            threads=threads,
            api_key=api_key,
            insecure=insecure or None,
            max_body_bytes=max_body_bytes,
            log_level=log_level,
            access_log=access_log or None,
        )
        settings.check_bind()
        read_manifest(artifact)  # a missing or foreign directory fails here, before binding
    except (SettingsError, ArtifactError) as exc:
        _fail(str(exc))
    if cluster is not None or shards is not None or replicas is not None or address is not None:
        raise typer.Exit(_serve_cluster(settings, cluster, shards, replicas, address))
    try:
        from lite_export.serving import run_server
    except ImportError as exc:
        _fail(str(exc))
    raise typer.Exit(run_server(settings))


def _serve_cluster(settings, cluster, shards, replicas, address) -> int:
    """``lite serve --cluster ray``: the same settings, as a Ray Serve application."""
    import dataclasses

    if cluster != "ray":
        given = "--shards, --replicas and --address need" if cluster is None else "use"
        _fail(f"{given} --cluster ray (the one cluster engine), got --cluster {cluster!r}")
    if settings.engine != "auto":
        _fail(
            "--engine does not apply to --cluster ray: the shards rank with kernels.rank and "
            "the user encoder runs user_encoder.onnx (see docs/cluster.md)"
        )
    try:
        from lite_export.cluster import ray_app
    except ImportError as exc:
        from lite_export.cluster import INSTALL_RAY

        _fail(f"--cluster ray needs Ray ({exc}): {INSTALL_RAY}")
    args = dataclasses.asdict(settings) | {
        "shards": 1 if shards is None else shards,
        "replicas": 1 if replicas is None else replicas,
    }
    try:  # every argument is checked (shards against the catalog) before Ray starts
        return ray_app.run(args, address=address)
    except ValueError as exc:
        _fail(str(exc))


def _ints(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"{option} must be comma-separated integers like '1,8,32', got {text!r}")
    if not values or min(values) < 1:
        _fail(f"{option} must be integers >= 1, got {text!r}")
    return values


def _floats(text: str | None, option: str) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        _fail(f"{option} must be comma-separated numbers like '0,1,2', got {text!r}")
    if not values or min(values) < 0:
        _fail(f"{option} must be numbers >= 0, got {text!r}")
    return values


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


ServeConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", help="Settings file for every `lite serve` started (serve.json keys)."
    ),
]
DurationOpt = Annotated[
    float, typer.Option(help="Seconds per measurement (each also stops at its request cap).")
]
ForceFilesOpt = Annotated[
    bool,
    typer.Option(
        help="Replace the output files of an earlier run in --out (only files lite-export "
        "wrote: any other file of those names is never overwritten)."
    ),
]
ProgressOpt = Annotated[bool, typer.Option(help="Show progress bars (on stderr).")]


@app.command(
    epilog="Examples:\n\n"
    "  lite bench art\n\n"
    "  lite bench art --engines onnxruntime --threads 1 --batch-sizes 1,16 --histories 50 "
    "--concurrency 1,16,64 --out bench-ort\n\n"
    "  lite bench art-fp32 art-fp16 --no-http            # precisions side by side\n\n"
    "  lite bench art --config serve.json --rates 100,200,400   # a tuned server, open loop"
)
def bench(
    artifacts: Annotated[
        list[Path], typer.Argument(help="Artifact directories (several: compare precisions).")
    ],
    out: Annotated[
        Path, typer.Option(help="Directory for NAME.json, NAME.md and the PNG plots.")
    ] = Path("bench"),
    name: Annotated[str, typer.Option("--name", help="Stem of the output files.")] = "bench",
    engines: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated engines \\[default: torch,onnxruntime,tensorrt that load here]."
        ),
    ] = None,
    threads: Annotated[
        str | None, typer.Option(help="Engine intra-op threads \\[default: 1, half, all cores].")
    ] = None,
    batch_sizes: Annotated[
        str, typer.Option(help="In process: histories per engine.recommend call.")
    ] = "1,8,32",
    histories: Annotated[
        str, typer.Option(help="History lengths (capped at the artifact's max_history).")
    ] = "50,200",
    concurrency: Annotated[str, typer.Option(help="HTTP: closed-loop client counts.")] = "1,8,32",
    rates: Annotated[
        str | None,
        typer.Option(help="HTTP: open-loop request rates per second, instead of --concurrency."),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Items per recommendation.")] = 10,
    inprocess: Annotated[bool, typer.Option(help="Measure engine.recommend in process.")] = True,
    http: Annotated[bool, typer.Option(help="Measure over HTTP against `lite serve`.")] = True,
    duration_s: DurationOpt = 1.5,
    reps: Annotated[int, typer.Option(help="In process: most calls per point.")] = 200,
    max_requests: Annotated[int, typer.Option(help="HTTP: most requests per point.")] = 5000,
    config: ServeConfigOpt = None,
    max_batch: Annotated[
        int | None, typer.Option(help="HTTP: the servers' --max-batch \\[default: 32].")
    ] = None,
    max_delay_ms: Annotated[
        float | None,
        typer.Option(help="HTTP: the servers' --max-delay-ms \\[default: 0, continuous]."),
    ] = None,
    busy_poll_ms: Annotated[
        float | None,
        typer.Option(help="HTTP: the servers' --busy-poll-ms \\[default: 0, off]."),
    ] = None,
    plots: Annotated[bool, typer.Option(help="Write the PNG plots (needs matplotlib).")] = True,
    progress: ProgressOpt = True,
    seed: Annotated[int, typer.Option(help="Seed of the sampled histories.")] = 0,
    force: ForceFilesOpt = False,
) -> None:
    """Measure latency p50/p95/p99 and throughput across engines, precisions, threads, batch
    sizes and history lengths, in process and over HTTP; write a table, JSON and plots."""
    for path in artifacts:
        _need(path, "artifact")
    import json as _json

    from rich.console import Console

    from lite_export.artifact import ArtifactError
    from lite_export.perf.bench import BenchConfig, machine_load, run_bench, tables
    from lite_export.perf.load import LoadError

    serve_settings: dict = {}
    try:
        if config is not None:
            from lite_export.serving.settings import ServeSettings

            serve_settings = ServeSettings.read_file(config)
        if max_batch is not None:
            serve_settings["max_batch"] = max_batch
        if max_delay_ms is not None:
            serve_settings["max_delay_ms"] = max_delay_ms
        if busy_poll_ms is not None:
            serve_settings["busy_poll_ms"] = busy_poll_ms
        if not name or "/" in name or name.startswith("."):
            _fail(f"--name must be a plain file stem like 'serve', got {name!r}")
        cfg = BenchConfig(
            artifacts=list(artifacts),
            out=out,
            name=name,
            engines=_names(engines),
            batch_sizes=_ints(batch_sizes, "--batch-sizes"),
            histories=_ints(histories, "--histories"),
            concurrency=_ints(concurrency, "--concurrency"),
            rates=_floats(rates, "--rates"),
            k=k,
            inprocess=inprocess,
            http=http,
            duration_s=duration_s,
            reps=reps,
            max_requests=max_requests,
            serve=serve_settings,
            plots=plots,
            seed=seed,
            force=force,
            inputs=[config] if config is not None else [],
        )
        if threads is not None:
            cfg.threads = _ints(threads, "--threads")
        result = run_bench(cfg, progress=progress)
    except (ValueError, ImportError, ArtifactError, LoadError, OSError) as exc:
        _fail(str(exc))
    console = Console(width=max(120, Console().width))
    for table in tables(result.rows):
        console.print(table)
    for note in result.notes:
        print(f"note: {note}")
    for line in machine_load(result.rows):
        print(line)
    loads = [r["loadavg_1m"] for r in result.rows if r.get("loadavg_1m") is not None]
    print("written: " + ", ".join(str(f) for f in result.files))
    print(
        _json.dumps(
            {
                "rows": len(result.rows),
                "files": [str(f) for f in result.files],
                "skipped": result.notes,
                "loadavg_1m": [min(loads), max(loads)] if loads else None,
            }
        )
    )


@app.command(
    epilog="Examples:\n\n"
    "  lite tune art --p99-ms 20\n\n"
    "  lite tune art --p99-ms 20 --engines onnxruntime --threads 1 --max-batch 16,32,64 "
    "--max-delay-ms 0,2,5 --history 200 --out tuned\n\n"
    "  lite serve art --config tuned/serve.json\n\n"
    "  lite export ckpt --out art-triton --format triton --triton-config tuned/tune.json\n\n"
    "  lite tune --gpu            (measure the ranking paths on this GPU for kernels.rank)\n\n"
    "  lite tune art --gpu        (the same for this artifact's catalog and width)"
)
def tune(
    artifact: Annotated[
        Path | None, typer.Argument(help="Artifact directory written by `lite export`.")
    ] = None,
    p99_ms: Annotated[
        float | None, typer.Option("--p99-ms", help="Target p99 latency of one request, in ms.")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Directory for serve.json, tune.json, tune_triton.pbtxt and tune_trials.json."
        ),
    ] = Path("."),
    engines: Annotated[
        str | None,
        typer.Option(help="Comma-separated engines to try \\[default: all that load here]."),
    ] = None,
    threads: Annotated[
        str | None, typer.Option(help="Engine threads to try \\[default: 1, half, all cores].")
    ] = None,
    max_batch: Annotated[str, typer.Option(help="Micro-batch sizes to try.")] = "8,16,32,64",
    max_delay_ms: Annotated[
        str,
        typer.Option(help="Batching waits to try, in ms (0: continuous batching, no wait)."),
    ] = "0,1,2,5",
    history: Annotated[
        int, typer.Option(help="History length of the requests (capped at max_history).")
    ] = 50,
    k: Annotated[int, typer.Option("--k", help="Items per recommendation.")] = 10,
    max_concurrency: Annotated[
        int, typer.Option(help="Highest number of concurrent clients in a trial's ladder.")
    ] = 64,
    duration_s: DurationOpt = 1.5,
    confirm_s: Annotated[
        float, typer.Option(help="Seconds of the confirmation run of the winner.")
    ] = 4.0,
    max_requests: Annotated[int, typer.Option(help="Most requests per measurement.")] = 5000,
    max_trials: Annotated[int, typer.Option(help="Most settings to measure.")] = 16,
    budget_s: Annotated[
        float, typer.Option(help="Start no new trial after this many seconds.")
    ] = 900.0,
    progress: ProgressOpt = True,
    seed: Annotated[int, typer.Option(help="Seed of the sampled histories.")] = 0,
    force: ForceFilesOpt = False,
    gpu: Annotated[
        bool,
        typer.Option(
            "--gpu",
            help="Instead: time the ranking paths (fused filter/exact, matmul + topk) on this "
            "GPU and store the table kernels.rank(method='auto') reads (see docs/kernels.md).",
        ),
    ] = False,
) -> None:
    """Find the serving settings (engine, threads, micro-batching) with the highest throughput
    that meets a p99 target over HTTP; write serve.json and Triton's dynamic batching. With
    --gpu: measure which ranking path is fastest per shape on this GPU."""
    _need(artifact, "artifact")
    if gpu:
        from lite_export.kernels.tuning import tune_gpu_cli

        try:
            print(tune_gpu_cli(artifact, budget_s=budget_s))
        except (RuntimeError, ValueError, OSError) as exc:
            _fail(str(exc))
        return
    if artifact is None or p99_ms is None:
        _fail(
            "lite tune needs an ARTIFACT and --p99-ms (e.g. `lite tune art --p99-ms 20`), or "
            "--gpu to measure the ranking paths of this GPU"
        )
    from rich.console import Console

    from lite_export.artifact import ArtifactError
    from lite_export.perf.load import LoadError
    from lite_export.perf.tune import TuneConfig, run_tune, trial_table

    try:
        cfg = TuneConfig(
            artifact=artifact,
            p99_ms=p99_ms,
            out=out,
            engines=_names(engines),
            max_batch=_ints(max_batch, "--max-batch"),
            max_delay_ms=_floats(max_delay_ms, "--max-delay-ms"),
            history=history,
            k=k,
            max_concurrency=max_concurrency,
            duration_s=duration_s,
            confirm_s=confirm_s,
            max_requests=max_requests,
            max_trials=max_trials,
            budget_s=budget_s,
            seed=seed,
            force=force,
        )
        if threads is not None:
            cfg.threads = _ints(threads, "--threads")
        result = run_tune(cfg, progress=progress)
    except (ValueError, ImportError, ArtifactError, LoadError, OSError) as exc:
        _fail(str(exc))
    Console(width=max(120, Console().width)).print(trial_table(result.trials, p99_ms))
    print(
        f"load average (1 min): {result.summary['loadavg_1m_start']} at the start, "
        f"{result.summary['loadavg_1m_end']} at the end, on {os.cpu_count()} cores"
    )
    if not result.met:
        _fail(result.message, code=1)
    print(result.message)
    print("written: " + ", ".join(str(f) for f in result.files))
    print(f"serve with: lite serve {artifact} --config {out / 'serve.json'}")


@app.command(epilog="Example:\n\n  lite env")
def env() -> None:
    """Print lite-export's version and source commit, every extra's packages with their
    installed versions, Python, platform and CUDA (paste this into bug reports)."""
    from lite_export.envinfo import format_report, report

    print(format_report(report()))


def _add_subcommands() -> None:
    from lite_export.cli_catalog import catalog_app
    from lite_export.cli_score import EPILOG as SCORE_EPILOG
    from lite_export.cli_score import score

    app.add_typer(catalog_app, name="catalog")
    app.command("score", epilog=SCORE_EPILOG)(score)


_add_subcommands()

#: when the `lite` process started, on the perf_counter clock (set by main(); None when the app
#: is invoked in process, e.g. by tests, and each command then starts its own clock)
_COMMAND_START: float | None = None
_IMPORTED_AT = time.perf_counter()


def main() -> None:
    global _COMMAND_START
    from lite_export.model.budget import process_age

    age = process_age()  # interpreter start-up and imports are part of the command
    _COMMAND_START = time.perf_counter() - age if age is not None else _IMPORTED_AT
    app()


if __name__ == "__main__":
    main()
