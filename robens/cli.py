"""The ``robens`` command line: a thin layer over the Python API.

User errors (missing data, bad config, corrupt checkpoint, bad input) print one
``error: ...`` message and exit with status 2, never a traceback; so does a refusal of the
file system (``OSError``: a read-only or pseudo folder, a full disk), naming the path.
Output paths (``--out``, ``output_dir``, ``--save``) are checked before any work starts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

try:  # typer >= 0.16 vendors click; its exceptions are not click's
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

import robens
from robens import choices
from robens.errors import RobensError
from robens.validation import check_output_dir, check_output_file, check_seed, parse_eps

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Train, attack and evaluate adversarially robust model ensembles.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(no_args_is_help=True, help="Inspect and download datasets.")
app.add_typer(data_app, name="data")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"robens {robens.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """robens: adversarially robust model ensembles."""


# ---------------------------------------------------------------------------- train
# flag -> dotted config key
TRAIN_FLAGS = {
    "dataset": "data.dataset",
    "data_root": "data.root",
    "train_size": "data.train_size",
    "test_size": "data.test_size",
    "batch_size": "data.batch_size",
    "model": "model.arch",
    "members": "model.members",
    "activation": "model.activation",
    "combine": "model.combine",
    "objective": "objective",
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "schedule": "schedule.name",
    "epochs": "training.epochs",
    "strategy": "training.strategy",
    "device": "training.device",
    "threads": "training.threads",
    "seed": "seed",
    "name": "name",
    "out": "output_dir",
}


#: the config keys that are sections (a ``--set`` may not replace one by a value)
SECTIONS = ("data", "model", "optimizer", "schedule", "training", "terms")


def build_train_config(config: Path | None, flags: dict[str, Any], sets: list[str]):
    """Merge a YAML config, explicit flags and ``--set key=value`` items into a config."""
    from robens.config import (
        apply_overrides,
        check_not_empty,
        load_yaml,
        parse_set_option,
        validate_config,
    )

    data: dict[str, Any] = {}
    if config is not None:
        loaded = load_yaml(config)
        check_not_empty(loaded, config)
        if not isinstance(loaded, dict):
            raise robens.errors.ConfigError(f"config {config} must be a mapping of keys")
        data = loaded
    overrides = {TRAIN_FLAGS[k]: v for k, v in flags.items() if v is not None}
    overrides.update(dict(parse_set_option(s) for s in sets))
    data = apply_overrides(data, overrides)
    if "output_dir" not in data and "name" in data:
        data["output_dir"] = f"runs/{data['name']}"
    cfg = validate_config(data, source=str(config) if config else "(flags)")
    check_output_dir(cfg.output_dir, "output_dir")
    return cfg


@app.command(epilog=choices.example("train"))
def train(
    config: Path | None = typer.Argument(None, help="Experiment YAML (see configs/)."),
    dataset: str | None = typer.Option(None, help=choices.datasets()),
    data_root: str | None = typer.Option(None, help="Folder holding the dataset files."),
    train_size: int | None = typer.Option(None, help="Use a random subset of the training set."),
    test_size: int | None = typer.Option(None, help="Use a random subset of the test set."),
    batch_size: int | None = typer.Option(None, help="Training batch size."),
    model: str | None = typer.Option(None, help=choices.models()),
    members: int | None = typer.Option(None, help="Number of ensemble members M."),
    activation: str | None = typer.Option(None, help="relu | leaky_relu"),
    combine: str | None = typer.Option(None, help="logits | probs | log_probs"),
    objective: str | None = typer.Option(
        None, help=f"e.g. 'ce + 0.5*gal + 0.1*jr'; terms: {choices.terms()}"
    ),
    optimizer: str | None = typer.Option(None, help="adam | sgd"),
    lr: float | None = typer.Option(None, help="Learning rate."),
    schedule: str | None = typer.Option(None, help="constant | step | cosine | cyclic_cosine"),
    epochs: int | None = typer.Option(None, help="Number of epochs."),
    strategy: str | None = typer.Option(None, help=choices.strategies()),
    device: str | None = typer.Option(None, help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    seed: int | None = typer.Option(None, help="Random seed."),
    name: str | None = typer.Option(None, help="Experiment name."),
    out: str | None = typer.Option(None, "--out", "-o", help="Run directory."),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set optimizer.lr=0.01"),
    resume: bool = typer.Option(False, help="Continue the run in --out from its checkpoint."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Train an ensemble; writes checkpoint.safetensors, config.yaml, history.json."""
    flags = {k: v for k, v in locals().items() if k in TRAIN_FLAGS}
    cfg = build_train_config(config, flags, set_)
    from robens.training import Trainer

    trainer = Trainer(cfg, progress=progress and sys.stderr.isatty())
    typer.echo(
        f"training {cfg.model.members}x{cfg.model.arch} on {trainer.train_set.name}"
        f" ({len(trainer.train_set)} train / {len(trainer.test_set)} test), objective"
        f" '{trainer.objective}', strategy {cfg.training.strategy}, seed {cfg.seed}"
    )
    result = trainer.fit(resume=resume)
    typer.echo(
        f"done: ensemble test accuracy {100 * result.test_accuracy:.2f}%;"
        f" checkpoint {result.checkpoint}"
    )


# ---------------------------------------------------------------------------- run
@app.command(epilog=choices.example("run"))
def run(
    config: Path = typer.Argument(..., help="Experiment YAML, e.g. configs/main.yaml."),
    suite: Path | None = typer.Option(
        None, help="Attack suite YAML (white-box, transfer, UAP); default:"
        " <config folder>/suites/<config name>.yaml when it exists."
    ),
    out: str | None = typer.Option(None, "--out", "-o", help="Run directory."),
    set_: list[str] = typer.Option([], "--set", help="Any config key: --set training.epochs=1"),
    report: bool = typer.Option(True, help="Build the HTML/Markdown report."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """The main job: train (resuming if interrupted) -> evaluate -> report."""
    from robens.pipeline import default_suite, run_pipeline

    suite = suite if suite is not None else default_suite(config)
    show = progress and sys.stderr.isatty()
    from robens.job import load_job, run_job

    job = load_job(config, out, set_)
    if job is not None:

        run_job(job, suite=suite, report=report, progress=show, source=str(config))
        return
    cfg = build_train_config(config, {"out": out}, set_)
    run_pipeline(cfg, suite=suite, report=report, progress=show)


# ---------------------------------------------------------------------------- evaluate
@app.command(epilog=choices.example("evaluate"))
def evaluate(
    checkpoint: Path = typer.Argument(..., help="checkpoint.safetensors or its run directory."),
    suite: Path | None = typer.Option(None, help="Attack suite YAML (white-box/transfer/UAP)."),
    dataset: str | None = typer.Option(None, help="Override the checkpoint's dataset."),
    data_root: str | None = typer.Option(None, help="Folder holding the dataset files."),
    test_size: int | None = typer.Option(None, help="Evaluate on a random test subset."),
    batch_size: int = typer.Option(500, help="Evaluation batch size."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where results go."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: int = typer.Option(0, help="Seed for subsets and random attacks."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
    force: bool = typer.Option(
        False, "--force", help="Allow --dataset other than the one the checkpoint was trained on."
    ),
) -> None:
    """Clean accuracy of each member and the ensemble (and an attack suite with --suite)."""
    from robens.evaluate import evaluate_clean_checkpoint

    check_seed(seed, "--seed")
    if out is not None:
        check_output_dir(out, "--out")
    if suite is not None:
        from robens.evaluate.clean import warn_if_unfinished

        warn_if_unfinished(checkpoint, _warn)
        if dataset is not None:
            from robens.checkpoint import load_checkpoint
            from robens.evaluate.clean import check_dataset_override

            check_dataset_override(load_checkpoint(checkpoint)[1], dataset, force)
        from robens.console import run_suite_cli

        run_suite_cli(
            checkpoint, suite, dataset, data_root, test_size, batch_size, out, device, seed,
            progress and sys.stderr.isatty(),
        )
        return
    result = evaluate_clean_checkpoint(
        checkpoint, dataset=dataset, root=data_root, test_size=test_size,
        batch_size=batch_size, out=out, device=device, seed=seed, force=force, warn=_warn,
    )
    _print_accuracy_table(result)
    typer.echo(f"records: {result['records_path']}")


def _print_accuracy_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"clean accuracy on {result['dataset']} ({result['n']} test images)")
    table.add_column("model")
    table.add_column("accuracy %", justify="right")
    for i, acc in enumerate(result["members"]):
        table.add_row(f"member {i}", f"{100 * acc:.2f}")
    table.add_row("[bold]ensemble[/bold]", f"[bold]{100 * result['ensemble']:.2f}[/bold]")
    Console().print(table)


# ---------------------------------------------------------------------------- attack
@app.command(epilog=choices.example("attack"))
def attack(
    checkpoint: Path = typer.Argument(..., help="checkpoint.safetensors or its run directory."),
    attack_name: str = typer.Option("pgd", "--attack", help=choices.attacks()),
    eps: str = typer.Option(
        "0.1", help="Perturbation budget in pixels of [0, 1]: a number or a fraction (8/255)."
    ),
    steps: int | None = typer.Option(None, help="Iterations (attack default when omitted)."),
    alpha: float | None = typer.Option(None, help="Step size (attack default when omitted)."),
    loss: str = typer.Option("ce", help="ce | cw (PGD); adaptive losses for MMC/RCE models."),
    norm: str = typer.Option("linf", help="linf | l2"),
    surrogate: Path | None = typer.Option(None, help="Craft on this checkpoint (transfer)."),
    save: Path | None = typer.Option(None, help="Save adversarial examples to an .npz file."),
    test_size: int | None = typer.Option(None, help="Attack a random test subset."),
    batch_size: int = typer.Option(250, help="Batch size."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Where the JSON record goes."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    seed: int = typer.Option(0, help="Seed of random starts and subsets."),
) -> None:
    """Attack a checkpoint (white-box, or transfer with --surrogate); prints robust accuracy."""
    from robens.evaluate.attack import attack_checkpoint

    check_seed(seed, "--seed")
    if save is not None:
        check_output_file(save, "--save")
    if out is not None:
        if out.suffix in (".json", ".jsonl"):
            check_output_file(out, "--out")
        else:
            check_output_dir(out, "--out")
    summary = attack_checkpoint(
        checkpoint, attack=attack_name, eps=parse_eps(eps, "--eps"), steps=steps, alpha=alpha,
        loss=loss, norm=norm,
        surrogate=surrogate, save=save, test_size=test_size, batch_size=batch_size, out=out,
        device=device, seed=seed, progress=sys.stderr.isatty(), warn=_warn,
        echo=lambda line: typer.echo(line, err=True),
    )
    if summary.get("stages"):
        from robens.console import print_stage_table

        print_stage_table(summary["stages"])
    typer.echo(
        f"{summary['attack']} eps={summary['eps']}: clean {100 * summary['clean_accuracy']:.2f}%"
        f" -> robust {100 * summary['robust_accuracy']:.2f}% on {summary['n']} images"
        f" ({summary['threat_model']}); record {summary['record_path']}"
    )
    for warning in summary.get("warnings", []):
        if warning not in summary.get("warned", []):
            _warn(warning)


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


# ---------------------------------------------------------------------------- data
@data_app.command("info", epilog=choices.example("data info"))
def data_info(
    name: str = typer.Argument(..., help=choices.datasets()),
    root: str | None = typer.Option(None, help="Folder holding the dataset files."),
) -> None:
    """Where a dataset is found, its files and sizes."""
    from robens.data import dataset_info

    typer.echo(json.dumps(dataset_info(name, root=root), indent=2, default=str))


@data_app.command("download", epilog=choices.example("data download"))
def data_download(
    name: str = typer.Argument(..., help="fashion-mnist | mnist | cifar10"),
    root: str | None = typer.Option(None, help="Target folder (default ~/.robens/data/NAME)."),
) -> None:
    """Download the official files (checksums verified). Needs a network connection."""
    from robens.data import download_dataset

    path = download_dataset(name, root=root)
    typer.echo(f"{name} is in {path}")


# ---------------------------------------------------------------------------- sweep
@app.command(epilog=choices.example("sweep"))
def sweep(
    grid: Path = typer.Argument(..., help="Sweep grid YAML (see configs/sweeps/)."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: local Ray)."),
    max_concurrent: int | None = typer.Option(None, help="Run at most N trials at once."),
    backend: str = typer.Option("ray", help="ray (robens[sweep]) | serial (in-process, no Ray)."),
    num_cpus: int | None = typer.Option(None, help="CPUs of the local Ray instance."),
    out: str | None = typer.Option(None, "--out", "-o", help="Override the grid's output_dir."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the trial table and exit."),
    progress: bool = typer.Option(True, help="Show a progress bar over trials."),
) -> None:
    """Run a grid of trials on Ray (or serially); complete trials are skipped on a rerun."""
    from robens.sweep import format_plan, plan_sweep, run_sweep

    plan = plan_sweep(grid, output_dir=out)
    if dry_run:
        typer.echo(format_plan(plan))
        return
    run_sweep(
        plan, address=address, max_concurrent=max_concurrent, backend=backend,
        num_cpus=num_cpus, progress=progress and sys.stderr.isatty(), echo=typer.echo,
    )


# ---------------------------------------------------------------------------- reproduce
@app.command(epilog=choices.example("reproduce"))
def reproduce(
    name: str | None = typer.Argument(
        None, help=f"Recipe: {choices.recipes()} (configs/reproduce/NAME.yaml), or a recipe"
        " YAML path."
    ),
    scale: str = typer.Option("quick", help="quick | paper (or another scale of the recipe)."),
    dataset: list[str] = typer.Option(
        [], help="Dataset(s) of the recipe (repeatable); 'all' = every one whose files are"
        " present; default: the recipe's first."
    ),
    out: str | None = typer.Option(
        None, "--out", "-o", help="Output folder (default runs/reproduce/NAME/DATASET-SCALE)."
    ),
    backend: str = typer.Option("ray", help="ray (robens[sweep]) | serial (in-process, no Ray)."),
    address: str | None = typer.Option(None, help="Ray cluster address (default: local Ray)."),
    max_concurrent: int | None = typer.Option(None, help="Run at most N trials at once."),
    num_cpus: int | None = typer.Option(None, help="CPUs of the local Ray instance."),
    gpus_per_trial: float | None = typer.Option(
        None, help="Ray GPUs per trial (default 1 when CUDA is available, else 0)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Experiment key set in every trial: --set training.device=cuda"
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the stages and trials, exit."),
    report_only: bool = typer.Option(
        False, "--report-only", help="Rebuild summary and report from the finished trials."
    ),
    list_: bool = typer.Option(False, "--list", help="List the recipes and their scales."),
    progress: bool = typer.Option(True, help="Show a progress bar over trials."),
) -> None:
    """Reproduce a published result: run the recipe's sweep(s), then report ours beside theirs."""
    from robens.config import parse_set_option
    from robens.reproduce import (
        build_report,
        dataset_available,
        format_recipe_plan,
        list_recipes,
        load_recipe,
        plan_recipe,
        run_recipe,
        write_summary,
    )

    if list_ or name is None:
        for recipe_name in list_recipes():
            raw, _ = load_recipe(recipe_name)
            typer.echo(f"{recipe_name}: {raw.get('title', '')} (scales:"
                       f" {', '.join(raw.get('scales', {}))}; datasets:"
                       f" {', '.join(raw.get('datasets', {}))})")
        if name is None and not list_:
            raise robens.errors.ConfigError("give a recipe NAME (or --list)")
        return
    overrides = dict(parse_set_option(s) for s in set_)
    for key, value in overrides.items():
        if key in SECTIONS and not isinstance(value, dict):
            raise robens.errors.ConfigError(
                f"--set {key}={value!r}: {key} is a section; set one of its keys ({key}.KEY=...)"
            )
    if backend == "ray" and not (dry_run or report_only):
        from robens.raysession import check_ray_target

        check_ray_target(address, num_cpus)
    raw, _ = load_recipe(name)
    datasets: list[str | None] = list(dataset) or [None]
    if "all" in datasets:
        datasets = [d for d in raw["datasets"] if dataset_available(d)]
        missing = [d for d in raw["datasets"] if d not in datasets]
        if missing:
            typer.echo(f"skipping {', '.join(missing)}: dataset files not found")
    if out is not None and len(datasets) > 1:
        raise robens.errors.ConfigError("--out needs a single --dataset")
    for ds in datasets:
        command = " ".join(
            [f"robens reproduce {name} --scale {scale}"]
            + ([f"--dataset {ds}"] if ds else [])
            + ([f"--out {out}"] if out else [])
            + ([f"--backend {backend}"] if backend != "ray" else [])
            + [f"--set {s}" for s in set_]
        )
        plan = plan_recipe(name, scale, ds, out, overrides)
        if dry_run:
            typer.echo(format_recipe_plan(plan))
            continue
        if report_only:
            summary, path = write_summary(plan)
            typer.echo(f"summary: {path}")
            typer.echo(f"report: {build_report(plan, summary)}")
            continue
        run_recipe(
            plan, backend=backend, address=address, max_concurrent=max_concurrent,
            num_cpus=num_cpus, gpus_per_trial=gpus_per_trial,
            progress=progress and sys.stderr.isatty(), echo=typer.echo,
            command=command,
        )


# ---------------------------------------------------------------------------- report
@app.command(epilog=choices.example("report"))
def report(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories holding records files."),
    out: Path = typer.Option(Path("report"), "--out", "-o", help="Report folder."),
) -> None:
    """Build an HTML report (PNG figures, Markdown summary) from the runs' records files."""
    from robens.report import build_report
    from robens.report.check import scan_records
    from robens.report.runs import find_record_files

    check_output_dir(out, "--out")
    where = ", ".join(str(d) for d in run_dirs)
    for line in scan_records(find_record_files(run_dirs), where):
        typer.echo(f"warning: skipped {line}", err=True)
    path = build_report(run_dirs, out)
    typer.echo(f"report: {path}")


# ---------------------------------------------------------------------------- entry point
def main(argv: list[str] | None = None) -> int:
    """Console entry point: maps library errors to one-line messages and exit status 2."""
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="robens")
        return int(rv) if isinstance(rv, int) else 0
    except RobensError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except OSError as exc:  # a file system refusal (full disk, read-only, /proc): the path named
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"error: {where}{exc.strerror or exc}", err=True)
        return 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except click_exceptions.ClickException as exc:  # usage: unknown option, bad value, ...
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} -h')" if ctx is not None else ""
        typer.echo(f"error: {exc.format_message()}{hint}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("interrupted; the last completed epoch's checkpoint is kept", err=True)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
