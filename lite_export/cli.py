"""The `lite` command. Each command is a thin call into the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


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
    "  lite train --data ml-1m --data-dir ../shared/data/ml-1m --preset small --out ckpt-ml1m\n\n"
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
    dropout: Annotated[float | None, typer.Option(help="Dropout.")] = None,
    max_history: Annotated[
        int | None, typer.Option(help="Positions the model sees (default: the data set's).")
    ] = None,
    finetune_item_llm: Annotated[bool, typer.Option(help="Fine-tune the item LLM too.")] = False,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Sequences per batch (per process).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (epochs).")] = None,
    loss: Annotated[str | None, typer.Option(help="full|sampled softmax.")] = None,
    num_negatives: Annotated[int | None, typer.Option(help="Negatives for --loss sampled.")] = None,
    max_train_seconds: Annotated[
        float | None, typer.Option(help="Stop after this much training time.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (runs are deterministic under it).")] = 0,
    device: DeviceOpt = "auto",
    json_out: JsonOpt = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a Lite-LLM4Rec model (or its SASRec peer) and write a checkpoint directory."""
    from accelerate import Accelerator
    from rich.console import Console

    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.workflow import (
        DataSpec,
        load_split,
        most_popular_metrics,
        pick_device,
        train_checkpoint,
        write_json,
    )

    spec = DataSpec(data, str(data_dir.resolve()) if data_dir else None)
    try:
        acc = Accelerator(**pick_device(device))
        ds, split = load_split(spec)
        overrides = dict(
            rec_llm=rec_llm,
            rec_arch=rec_arch,
            d_model=d_model,
            n_layers=n_layers,
            n_heads=n_heads,
            dropout=dropout,
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
            patience=patience,
            loss=loss,
            num_negatives=num_negatives,
            max_train_seconds=max_train_seconds,
            seed=seed,
        )
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
        _fail(str(exc))
    model, result, test = train_checkpoint(
        spec, model_cfg, train_cfg, out, accelerator=acc, progress=progress, data=(ds, split)
    )
    if acc.is_main_process:
        pop = most_popular_metrics(split)
        Console().print(
            _metrics_table(
                {f"{preset} ({out.name})": test, "most-popular": pop},
                f"{ds.name} test — full ranking, history masked",
            )
        )
        print(
            f"checkpoint written to {out}  ({result.train_seconds:.1f}s, {result.epochs_run} epochs)"
        )
        if json_out:
            write_json(json_out, {"test": test, "most_popular": pop, "train": result.to_dict()})


@app.command(
    name="eval",
    epilog="Examples:\n\n"
    "  lite eval ckpt\n\n"
    "  lite eval ckpt --split valid --json metrics.json\n\n"
    "  lite eval ckpt-ml1m --data ml-1m --data-dir ../shared/data/ml-1m",
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
) -> None:
    """Evaluate a checkpoint: Recall/NDCG@{5,10,20}, full ranking, history masked, beside most-popular."""
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

    try:
        meta = read_checkpoint_meta(ckpt)
        stored = meta.get("data", {})
        spec = DataSpec(
            data or stored.get("name", "synthetic"),
            str(data_dir.resolve()) if data_dir else (stored.get("data_dir") if not data else None),
        )
        dev = "cuda" if device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
        model = LiteLLM4Rec.from_pretrained(ckpt, device=dev)
        ds, split = load_split(spec)
        if ds.num_items != model.config.num_items or list(ds.item_ids) != model.catalog.ids:
            _fail(
                f"the data set {spec.name!r} has a different item catalog ({ds.num_items} items) "
                f"from the checkpoint ({model.config.num_items}); evaluate on the data it was trained on"
            )
        metrics = evaluate_split(model, split, split_name, device=dev)
        pop = most_popular_metrics(split, split_name)
    except (ValueError, FileNotFoundError, ImportError, OSError) as exc:
        _fail(str(exc))
    Console().print(
        _metrics_table(
            {ckpt.name: metrics, "most-popular": pop}, f"{ds.name} {split_name} — {PROTOCOL}"
        )
    )
    if json_out:
        write_json(
            json_out,
            {
                "checkpoint": str(ckpt),
                "dataset": ds.name,
                "split": split_name,
                "protocol": PROTOCOL,
                "metrics": metrics,
                "most_popular": pop,
            },
        )
        print(f"metrics written to {json_out}")


@app.command(
    epilog="Examples:\n\n  lite demo --no-serve\n\n  lite demo --no-serve --epochs 3 --out demo-ckpt"
)
def demo(
    serve: Annotated[
        bool,
        typer.Option("--serve/--no-serve", help="Serve the model afterwards (needs `lite serve`)."),
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Keep the checkpoint here.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the tiny preset's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Train on the built-in synthetic catalog, evaluate, and show sample recommendations."""
    import tempfile

    from rich.console import Console
    from rich.table import Table

    from lite_export.model.config import LiteConfig, TrainConfig
    from lite_export.model.metrics import PROTOCOL
    from lite_export.model.workflow import (
        DataSpec,
        load_split,
        most_popular_metrics,
        train_checkpoint,
    )

    console = Console()
    spec = DataSpec("synthetic")
    ds, split = load_split(spec)
    model_cfg = LiteConfig.from_name("tiny", max_history=ds.max_history)
    train_cfg = TrainConfig.from_name("tiny", epochs=epochs, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = out or Path(tmp) / "ckpt"
        model, result, test = train_checkpoint(spec, model_cfg, train_cfg, ckpt, data=(ds, split))
        pop = most_popular_metrics(split)
        console.print(
            _metrics_table(
                {"Lite-LLM4Rec (tiny)": test, "most-popular": pop}, f"synthetic test — {PROTOCOL}"
            )
        )
        users = [0, 1, 2]
        hists = [[ds.item_ids[i] for i in split.test[u][0]] for u in users]
        top = model.recommend(hists, k=5)
        for u, hist, ids, scores in zip(users, hists, top.ids, top.scores, strict=True):
            table = Table(
                title=f"user {ds.user_ids[u]}: last items "
                + "; ".join(ds.item_titles[ds.index_of(i)] for i in hist[-3:])
            )
            table.add_column("#", justify="right")
            table.add_column("item")
            table.add_column("title")
            table.add_column("score", justify="right")
            for r, (i, s) in enumerate(zip(ids, scores, strict=True), 1):
                table.add_row(str(r), i, ds.item_titles[ds.index_of(i)], f"{s:.3f}")
            console.print(table)
        console.print(
            f"trained in {result.train_seconds:.1f}s ({result.epochs_run} epochs)"
            + (f"; checkpoint kept in {out}" if out else "")
        )
    if serve:
        console.print(
            "[yellow]serving is not part of this release yet; "
            "run `lite demo --no-serve` to skip this step.[/yellow]"
        )


def _shape(text: str | None, default: tuple[int, int]) -> tuple[int, int]:
    if text is None:
        return default
    try:
        b, length = (int(x) for x in text.split(","))
    except ValueError:
        _fail(f"a shape must be 'BATCH,HISTORY' like '16,50', got {text!r}")
    return b, length


@app.command(
    name="export",
    epilog="Examples:\n\n"
    "  lite export ckpt --out art\n\n"
    "  lite export ckpt --out art --precision fp16 --k 50 --force\n\n"
    "  lite export ckpt --out art --format tensorrt --opt-shape 16,50 --max-shape 256,200\n\n"
    "  lite export ckpt --out art --format triton --triton-max-batch-size 32",
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
    force: Annotated[bool, typer.Option(help="Replace an existing artifact (atomically).")] = False,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 18,
    external_data_threshold: Annotated[
        int, typer.Option(help="Bytes of weights above which ONNX external data is used.")
    ] = 1_500_000_000,
    optimize: Annotated[
        bool, typer.Option(help="Also write ONNX Runtime's optimised graph.")
    ] = True,
    min_shape: Annotated[
        str | None, typer.Option(help="TensorRT profile min BATCH,HISTORY.")
    ] = None,
    opt_shape: Annotated[
        str | None, typer.Option(help="TensorRT profile opt BATCH,HISTORY.")
    ] = None,
    max_shape: Annotated[
        str | None, typer.Option(help="TensorRT profile max BATCH,HISTORY.")
    ] = None,
    timing_cache: Annotated[
        Path | None, typer.Option(help="TensorRT timing cache file (read and updated).")
    ] = None,
    triton_max_batch_size: Annotated[
        int, typer.Option(help="Triton max_batch_size of both models (--format triton).")
    ] = 64,
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
) -> None:
    """Export a checkpoint to a validated ONNX artifact (frozen item embeddings, top-K in graph)."""
    from lite_export.exporters.onnx import ExportError, ExportOptions, export_artifact
    from lite_export.exporters.triton_server import TritonRepositoryError

    if fmt not in ("onnx", "tensorrt", "triton"):
        _fail(f"--format must be onnx, tensorrt or triton, got {fmt!r}")
    post_build = None
    if fmt == "triton":
        if triton_max_batch_size < 1 or triton_instances < 1:
            _fail("--triton-max-batch-size and --triton-instances must be >= 1")

        def post_build(tmp: Path, manifest: dict) -> list[str]:
            # inside the export's temporary directory: the repository is checksummed in the
            # manifest and published atomically with the rest of the artifact
            from lite_export.exporters.triton_server import build_model_repository

            files = build_model_repository(
                tmp,
                tmp / "triton",
                manifest,
                max_batch_size=triton_max_batch_size,
                instance_count=triton_instances,
                kind="KIND_GPU" if triton_tensorrt or triton_gpu else "KIND_CPU",
                tensorrt_accelerator=triton_tensorrt,
            )
            manifest["triton"] = {
                "repository": "triton",
                "models": {"lite": "python", "lite_onnx": "onnxruntime"},
                "max_batch_size": triton_max_batch_size,
                "instances": triton_instances,
                "tensorrt_accelerator": triton_tensorrt,
                "kind": "KIND_GPU" if triton_tensorrt or triton_gpu else "KIND_CPU",
            }
            return [f"triton/{f}" for f in files]

    if fmt == "tensorrt":
        from lite_export.exporters.tensorrt import tensorrt_available

        if not tensorrt_available():
            _fail(
                "--format tensorrt needs TensorRT and an NVIDIA GPU on this host: "
                'pip install "lite-export[gpu]" on a GPU machine (the ONNX export works anywhere)'
            )

        def post_build(tmp: Path, manifest: dict) -> list[str]:
            from lite_export.exporters.tensorrt import build_engine

            hist = manifest["dims"]["max_history"]
            shapes = [
                _shape(min_shape, (1, 1)),
                _shape(opt_shape, (16, hist)),
                _shape(max_shape, (256, hist)),
            ]
            profile = [{"item_ids": s, "exclude_ids": s} for s in shapes]
            build_engine(
                tmp / "model.onnx",
                tmp / "model.plan",
                min_shapes=profile[0],
                opt_shapes=profile[1],
                max_shapes=profile[2],
                precision=precision,
                timing_cache=timing_cache,
            )
            manifest["tensorrt_profile"] = {"min": shapes[0], "opt": shapes[1], "max": shapes[2]}
            return ["model.plan"]

    opts = ExportOptions(
        k=k,
        precision=precision,
        opset=opset,
        external_data_threshold=external_data_threshold,
        optimize=optimize,
    )
    try:
        path = export_artifact(ckpt, out, opts, force=force, post_build=post_build)
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
    "  curl -s localhost:8000/v1/recommend -H 'Content-Type: application/json' "
    '-d \'{"history": ["1193", "661"], "k": 10}\''
)
def serve(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory written by `lite export`.")],
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000].")] = None,
    engine: Annotated[
        str | None, typer.Option(help="auto|torch|onnxruntime|tensorrt [default: auto].")
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(help="Most requests per engine call [default: 32].")
    ] = None,
    max_delay_ms: Annotated[
        float | None,
        typer.Option(help="Longest wait for a batch to fill, in ms [default: 2]."),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(
            help="Requests waiting for the engine before 503 + Retry-After [default: 256]."
        ),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Engine intra-op threads [default: half the cores].")
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
        int | None, typer.Option(help="Largest request body, bytes [default: 1000000].")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="uvicorn log level [default: info].")
    ] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request (costs throughput).")] = False,
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
    try:
        from lite_export.serving import run_server
    except ImportError as exc:
        _fail(str(exc))
    raise typer.Exit(run_server(settings))


@app.command(epilog="Example:\n\n  lite env")
def env() -> None:
    """Print versions of lite-export and its runtimes (paste this into bug reports)."""
    import platform
    from importlib import metadata

    from lite_export import __version__

    rows = {
        "lite-export": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    for pkg in (
        "torch",
        "transformers",
        "accelerate",
        "safetensors",
        "tokenizers",
        "numpy",
        "triton",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "tensorrt",
        "faiss-cpu",
    ):
        try:
            rows[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            rows[pkg] = "not installed"
    try:
        import torch

        rows["cuda"] = (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available"
        )
    except ImportError:
        pass
    width = max(map(len, rows))
    for k, v in rows.items():
        print(f"{k:<{width}}  {v}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
