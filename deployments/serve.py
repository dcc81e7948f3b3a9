"""Serve the deployments of deployments/prefect.yaml on the Prefect server PREFECT_API_URL names (`bard serve`).

The file is read into small pydantic models, so a mistake names the file, the deployment and the field; each
deployment's parameters are checked against the flow's before anything is served."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bard_core.errors import BardError

DEPLOYMENTS_FILE = Path(__file__).with_name("prefect.yaml")


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
    for spec in specs:
        try:
            flow_of(spec).validate_parameters(spec.parameters)
        except Exception as err:  # Prefect's ParameterTypeError and friends
            raise BardError(f"{path}: deployment {spec.name}: parameters: {err}") from None
    return specs


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
    """Register the deployments with the server and run what it schedules until interrupted (Ctrl-C)."""
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise BardError("no Prefect server to serve on: start one with `bard ui` and set PREFECT_API_URL as it prints")
    prefect_serve(*runner_deployments(load_deployments(path)), limit=limit)


if __name__ == "__main__":
    serve()
