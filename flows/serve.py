"""Serve the deployments of deployments/prefect.yaml, and one per stage of the graph, on the Prefect server
PREFECT_API_URL names (`bard serve`).

The file is read into small pydantic models, so a mistake names the file, the deployment and the field; each
deployment's parameters are checked against the flow's before anything is served."""

from __future__ import annotations

import asyncio
import importlib
import signal
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bard_core.errors import BardError
from tasks.graph import ORDER

DEPLOYMENTS_FILE = Path(__file__).resolve().parent.parent / "deployments" / "prefect.yaml"


class ScheduleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str
    timezone: str = "UTC"
    active: bool = True


class DeploymentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    entrypoint: str = Field(..., pattern=r"^[\w/]+\.py:\w+$", description="path/to/module.py:flow_function")
    description: str | None = None
    parameters: dict[str, Any] = {}
    schedules: list[ScheduleSpec] = []
    tags: list[str] = []


class DeploymentsFile(BaseModel):
    model_config = ConfigDict(extra="allow")  # Prefect's own keys (name, prefect-version, pull, ...) are kept as they are

    deployments: list[DeploymentSpec] = Field(..., min_length=1)


def load_deployments(path: Path = DEPLOYMENTS_FILE) -> list[DeploymentSpec]:
    try:
        data = yaml.safe_load(Path(path).read_text())
        specs = DeploymentsFile.model_validate(data).deployments
    except FileNotFoundError:
        raise BardError(f"{path}: no such deployments file") from None
    except (yaml.YAMLError, ValidationError) as err:
        raise BardError(f"{path}: {err}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BardError(f"{path}: deployment names must be unique, got {names}")
    specs += [stage_deployment(name) for name in ORDER if name not in names]  # the file may redefine one
    for spec in specs:
        try:
            flow_of(spec).validate_parameters(spec.parameters)
        except Exception as err:  # Prefect's ParameterTypeError and friends
            raise BardError(f"{path}: deployment {spec.name}: parameters: {err}") from None
    return specs


def stage_deployment(name: str) -> DeploymentSpec:
    """One deployment per stage of the graph: run (or re-run) that stage alone from the UI, its inputs taken from
    the store."""
    return DeploymentSpec(name=name, entrypoint="flows/pipeline.py:pipeline_flow", parameters={"stages": [name]},
                          description=f"Stage {name} alone, its inputs taken from the artifact store.",
                          tags=["bard", "stage"])  # fmt: skip


def flow_of(spec: DeploymentSpec):
    """The flow an entrypoint names, imported as a module (the project is installed), wherever bard runs from."""
    file, _, function = spec.entrypoint.partition(":")
    module = importlib.import_module(file.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


def runner_deployments(specs: list[DeploymentSpec]) -> list:
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    return [
        flow_of(spec).to_deployment(
            name=spec.name,
            description=spec.description,
            parameters=spec.parameters,
            schedules=[Cron(s.cron, timezone=s.timezone, active=s.active) for s in spec.schedules],
            tags=spec.tags,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        for spec in specs
    ]


def serve(path: Path = DEPLOYMENTS_FILE, limit: int = 1) -> None:
    """Register the deployments with the server and run what it schedules until SIGTERM or Ctrl-C, which cancel the
    run in flight (marked Cancelled in the UI, its finished artifacts kept) and pause the schedules."""
    from prefect.runner import Runner
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise BardError("no Prefect server to serve on: start one with `bard ui` and set PREFECT_API_URL as it prints")
    deployments = runner_deployments(load_deployments(path))
    runner = Runner(limit=limit)
    for deployment in deployments:
        runner.add_deployment(deployment)

    async def run() -> None:
        loop = asyncio.get_running_loop()

        def stop(*_) -> None:
            loop.call_soon_threadsafe(lambda: loop.create_task(runner.astop()))

        # Prefect 3.8's own SIGTERM handler exits leaving the run in flight "Running" forever, and SIGINT went
        # unheard while a run was in flight: both stop the runner here, as a service manager expects
        runner.handle_sigterm = stop  # the handler Runner.start installs for SIGTERM
        signal.signal(signal.SIGINT, stop)
        print(f"Serving {len(deployments)} deployments on {PREFECT_API_URL.value()}; SIGTERM or Ctrl-C stops",
              flush=True)  # fmt: skip
        await runner.start()

    asyncio.run(run())
