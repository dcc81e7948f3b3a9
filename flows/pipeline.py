"""The pipeline flow: the selected stages in order, each as a subflow; finished artifacts are reused."""

from __future__ import annotations

from prefect import flow

from bard_core.config import BardConfig
from flows.assemble import assemble_flow
from flows.compress import compress_flow
from flows.eval import eval_flow
from flows.grpo import grpo_flow
from flows.problems import problems_flow
from flows.report import report_flow
from flows.sft import sft_flow
from flows.stages import plan
from flows.teacher import teacher_flow
from storage.artifacts import Manifest

STAGE_FLOWS = {"problems": problems_flow, "teacher": teacher_flow, "compress": compress_flow, "assemble": assemble_flow,
               "sft": sft_flow, "grpo": grpo_flow, "eval": eval_flow, "report": report_flow}


@flow(name="pipeline")
def pipeline_flow(config: BardConfig, stages: list[str], refresh: list[str] | None = None) -> dict[str, Manifest]:
    """Stage by stage; with `variants` in the config, each variant's version of a stage runs right after it."""
    refresh = refresh or []
    return {
        label: STAGE_FLOWS[name].with_options(flow_run_name=label)(cfg, refresh=name in refresh)
        for label, name, cfg in plan(config, stages)
    }
