"""The pipeline flow: the selected stages in order, each as a subflow. A stage whose artifact is finished is not
run at all, so a retried flow run (from the CLI or the Prefect UI) runs only the failed stage and what follows it.

Its parameters are what a user types, not a config object: a profile path, `--set`-style overrides and stage
names. They appear as a form in the Prefect UI (stage names as choices) and the deployments pass them."""

from __future__ import annotations

import logging
from prefect import flow

from bard_core.config import Stage, load_config
from bard_core.errors import BardError
from flows.assemble import assemble_flow
from flows.compress import compress_flow
from flows.eval import eval_flow
from flows.grpo import grpo_flow
from flows.problems import problems_flow
from flows.report import report_flow
from flows.sft import sft_flow
from flows.stages import BUILT, plan, refreshed, resolve
from flows.teacher import teacher_flow
from storage import catalog
from storage.artifacts import ArtifactStore, Manifest

log = logging.getLogger("bard")
# bard's lines (what was reused, where each artifact and the report are) at INFO. With PREFECT_LOGGING_EXTRA_LOGGERS=bard
# (the CLI sets it; a served run inherits it from `bard serve`) they also reach the flow run's logs in the UI.
log.setLevel(logging.INFO)


class StageFailed(BardError):
    pass


STAGE_FLOWS = {"problems": problems_flow, "teacher": teacher_flow, "compress": compress_flow, "assemble": assemble_flow,
               "sft": sft_flow, "grpo": grpo_flow, "eval": eval_flow, "report": report_flow}


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
    manifests = {}
    for label, name, step_cfg in plan(cfg, names):
        finished = store.status(name, BUILT[name].key(step_cfg))
        if finished.damage and name not in recompute:
            raise finished.error()  # never reused, never silently built over: --refresh rebuilds it
        if finished.intact and name not in recompute:
            log.info("%s: finished artifact %s reused", label, finished.key)
            manifests[label] = finished.manifest
            continue
        try:
            manifests[label] = STAGE_FLOWS[name].with_options(flow_run_name=label)(step_cfg, refresh=name in recompute)
        except Exception as err:  # the stage's own traceback is in its Prefect logs; this says where the run stopped
            reason = str(err) if isinstance(err, BardError) else f"{type(err).__name__}: {str(err).splitlines()[0]}"
            raise StageFailed(f"stage {label} failed: {reason}\nEvery finished artifact is kept: `bard run --from {name}` "
                              "(or Retry on this flow run in the Prefect UI) goes on from there") from err  # fmt: skip
    # The variants' stages run after this config's: point the dataset views (`bard query`) back at this config's.
    for name in names:  # this config's stages are labelled by their bare names
        catalog.register(store.home, manifests[name])
    log.info("artifacts under %s", store.root)
    if "report" in manifests:
        log.info("the report: %s", manifests["report"].stats["report"])
    return manifests
