"""The pipeline flow: the selected stages in order, each as a subflow. A stage whose artifact is finished is not
run at all, so a retried flow run (from the CLI or the Prefect UI) runs only the failed stage and what follows it.

Its parameters are what a user types, not a config object: a profile path, `--set`-style overrides and stage
names. They appear as a form in the Prefect UI (stage names as choices) and the deployments pass them."""

from __future__ import annotations

import logging
from typing import Literal

from prefect import flow, task
from prefect.cache_policies import NONE

from bard_core.config import load_config
from bard_core.errors import BardError
from flows.stages import refreshed, resolve
from storage import catalog
from storage.artifacts import ArtifactStore, Manifest
from tasks.graph import ORDER, Plan, Step, build_step
from tasks.publish import progress_reporter, publish_report, publish_stages, publish_summary
from tasks.retries import with_retries

log = logging.getLogger("bard")
# bard's lines (what was reused, where each artifact and the report are) at INFO. With PREFECT_LOGGING_EXTRA_LOGGERS=bard
# (the CLI sets it; a served run inherits it from `bard serve`) they also reach the flow run's logs in the UI.
log.setLevel(logging.INFO)

Stage = Literal[tuple(ORDER)]  # the stage names, as choices in the UI's run form


class StageFailed(BardError):
    pass


@task(cache_policy=NONE)
def build_task(step: Step, refresh: bool) -> Manifest:
    from prefect.runtime import flow_run

    manifest = build_step(step, refresh, flow_run_id=flow_run.id, on_progress=progress_reporter(step.name))
    publish_summary(manifest, step.stage.summary(manifest))
    return manifest


@flow(validate_parameters=False)
def stage_flow(step: Step, refresh: bool = False) -> Manifest:
    """Any stage: build its artifact from its inputs', retried on transient failures (`orchestration`)."""
    return with_retries(build_task.with_options(name=step.name), step.config)(step, refresh)


@flow(name="pipeline", description="BARD: problems → teacher → compress → assemble → sft → grpo → eval → report")
def pipeline_flow(
    config: str = "configs/demo.yaml",
    overrides: list[str] | None = None,
    stages: list[Stage] | None = None,
    start: Stage | None = None,
    refresh: list[Stage] | None = None,
    home: str | None = None,
) -> dict[str, Manifest]:
    """Run the pipeline; finished artifacts are reused.

    Args:
        config: YAML profile, relative to where bard runs (the repository root for the shipped profiles).
        overrides: config changes as `key=value` (the value in YAML), like `bard run --set`; e.g. `sft.epochs=1`.
        stages: only these stages (default: every stage the profile can run).
        start: this stage and every one after it (instead of `stages`).
        refresh: recompute these stages and every one after them, even if finished.
        home: artifact home (default: the profile's `home`, BARD_HOME or ./.bard).
    """
    cfg = load_config(config, overrides or [], home)
    names, note = resolve(cfg, stages, start)
    if note:
        log.info(note)
    recompute = refreshed(names, refresh or [])
    store = ArtifactStore(cfg.home)
    manifests, reused = {}, []
    try:
        for step in Plan(cfg).steps(names):
            finished = store.status(step.name, step.key)
            if finished.damage and step.name not in recompute:
                raise finished.error()  # never reused, never silently built over: --refresh rebuilds it
            if finished.intact and step.name not in recompute:
                log.info("%s: finished artifact %s reused", step.label, step.key)
                manifests[step.label] = finished.manifest
                reused.append(step.label)
                continue
            try:
                run = stage_flow.with_options(name=step.name, flow_run_name=step.label)
                manifests[step.label] = run(step, refresh=step.name in recompute)
            except Exception as err:  # the stage's own traceback is in its Prefect logs; this says where the run stopped
                reason = str(err) if isinstance(err, BardError) else f"{type(err).__name__}: {str(err).splitlines()[0]}"
                raise StageFailed(f"stage {step.label} failed: {reason}\nEvery finished artifact is kept: `bard run --from "
                                  f"{step.name}` (or Retry on this flow run in the Prefect UI) goes on from there") from err  # fmt: skip
    finally:
        # The dataset views (`bard query`) point at this config's artifacts, not its variants' (labelled name@V).
        for name in names:
            if name in manifests:
                catalog.register(store.home, manifests[name])
        publish_stages(manifests, reused)
    log.info("artifacts under %s", store.root)
    if "report" in manifests:
        publish_report(manifests["report"])  # in this run's Artifacts tab, whether the report was built or reused
        log.info("the report: %s", manifests["report"].stats["report"])
    return manifests
