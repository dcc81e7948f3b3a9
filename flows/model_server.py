"""An OpenAI-compatible HTTP server over a model trained by bard, with a thinking budget per request
(`bard serve-model`). Not a Prefect flow: it lives here because it resolves artifact references (`sft`, `grpo@V`)
from the store, as the CLI does.

    POST /v1/chat/completions   OpenAI's chat body, plus `thinking_budget` (tokens), `budget_mode`
                                (soft | hard | soft+hard) and `answer_tokens`; `stream: true` sends server-sent
                                events. The thinking comes back as `reasoning_content`, its tokens in
                                `usage.completion_tokens_details.reasoning_tokens`, and `bard` says whether the cap fired.
    GET  /v1/models             the one model served
    GET  /health

Requests are batched: one worker thread runs `BudgetedModel.generate` on every request waiting when it is free,
each row under its own budget. A bad request gets HTTP 400 with one message (OpenAI's error shape), before any
generation; the server keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from bard_core.errors import BardError
from bard_core.inference import BudgetedModel, InferenceError, Prepared, Request, Result

# ---------------------------------------------------------------- which model


def resolve_model(ref: str, config: Path | None = None, overrides: list[str] | None = None, home: str | None = None) -> Path:
    """A model directory, or `sft`, `grpo`, `sft@V`, `grpo@V`: the model of that artifact of the config."""
    from bard_core.config import load_config
    from tasks.eval import trained
    from tasks.graph import Plan

    if Path(ref).is_dir():
        return Path(ref)
    if not trained(ref):
        raise BardError(f"model {ref!r}: neither a model directory nor sft, grpo, sft@V or grpo@V")
    cfg = load_config(config, overrides, home)
    try:
        step = Plan(cfg).step(ref)
    except BardError as err:
        raise BardError(f"model {ref!r}: {err}") from None
    manifest = step.manifest()
    if manifest is None:
        raise BardError(f"model {ref!r}: the {step.name} artifact of this config is not built yet in {cfg.home}: "
                        f"run `bard run --stages {step.name}` (or give a model directory)")  # fmt: skip
    return Path(manifest.path) / "model"


# ---------------------------------------------------------------- the request body


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI's content parts: only text ones are understood here
            return "".join(str(part.get("text", "")) for part in self.content if part.get("type") == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields this server has no use for

    model: str
    messages: list[Message] = Field(..., min_length=1)
    thinking_budget: StrictInt | None = Field(None, ge=1, description="thinking tokens; none: unbudgeted")
    budget_mode: Literal["soft", "hard", "soft+hard"] = "soft"
    answer_tokens: StrictInt = Field(64, ge=1, description="hard mode: tokens after the closing tag, at most")
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: float = Field(0.6, ge=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: StrictInt | None = Field(None, ge=0)
    n: StrictInt = Field(1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    def request(self) -> Request:
        return Request(
            messages=[{"role": m.role, "content": m.text()} for m in self.messages],
            budget=self.thinking_budget, mode=self.budget_mode, answer_tokens=self.answer_tokens,
            max_tokens=self.max_completion_tokens or self.max_tokens, temperature=self.temperature, top_p=self.top_p,
            seed=self.seed if self.seed is not None else random.randrange(2**31),
        )  # fmt: skip


# ---------------------------------------------------------------- batching


@dataclass
class _Job:
    prepared: Prepared
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue  # ("delta", kind, text), ("done", Result) or ("error", message)

    def send(self, *event) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class Batcher:
    """One thread owns the model: it takes every job waiting (up to the model's batch size) into one generate call."""

    def __init__(self, model: BudgetedModel):
        self.model = model
        self.jobs: queue.Queue[_Job] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="bard-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: _Job) -> None:
        self.jobs.put(job)

    def _run(self) -> None:
        while True:
            batch = [self.jobs.get()]
            while len(batch) < self.model.batch_size:
                try:
                    batch.append(self.jobs.get_nowait())
                except queue.Empty:
                    break
            try:
                results = self.model.generate([j.prepared for j in batch],
                                              on_delta=lambda i, kind, text: batch[i].send("delta", kind, text))  # fmt: skip
            except Exception as err:  # noqa: BLE001 - every waiting request hears of it; the server goes on
                for job in batch:
                    job.send("error", f"generation failed: {type(err).__name__}: {err}")
                continue
            for job, result in zip(batch, results, strict=True):
                job.send("done", result)


# ---------------------------------------------------------------- the app


def _error(status: int, message: str, param: str | None = None):
    from fastapi.responses import JSONResponse

    kind = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


def _usage(result: Result) -> dict:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": result.thinking_tokens},
    }


def _bard(result: Result) -> dict:
    return {"thinking_budget": result.budget, "budget_mode": result.mode, "thinking_tokens": result.thinking_tokens,
            "answer_tokens": result.answer_tokens, "capped": result.capped}  # fmt: skip


def create_app(model: BudgetedModel, name: str):
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import StreamingResponse

    app = FastAPI(title=f"bard: {name}")
    batcher = Batcher(model)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return _error(400, f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
        where = ".".join(str(p) for p in first["loc"] if p != "body")
        got = f" (got {first['input']!r})" if "input" in first and not isinstance(first["input"], (dict, list)) else ""
        return _error(400, f"{where or 'body'}: {first['msg']}{got}", where or None)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):  # never a traceback in the answer
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "bard"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest):
        if body.model != name:
            return _error(400, f"model {body.model!r}: unknown; this server serves {name!r}", "model")
        try:
            prepared = model.prepare(body.request())
        except InferenceError as err:
            return _error(400, str(err))
        job = _Job(prepared, asyncio.get_running_loop(), asyncio.Queue())
        batcher.submit(job)
        ident, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(_sse(job, ident, created, name, usage), media_type="text/event-stream")
        thinking, answer = [], []
        while True:
            event = await job.events.get()
            if event[0] == "delta":
                (thinking if event[1] == "thinking" else answer).append(event[2])
            elif event[0] == "error":
                return _error(500, event[1])
            else:
                result: Result = event[1]
                break
        message = {"role": "assistant", "content": result.answer, "reasoning_content": result.thinking}
        return {
            "id": ident, "object": "chat.completion", "created": created, "model": name,
            "choices": [{"index": 0, "message": message, "finish_reason": result.finish_reason}],
            "usage": _usage(result), "bard": _bard(result),
        }  # fmt: skip

    return app


async def _sse(job: _Job, ident: str, created: int, name: str, include_usage: bool):
    """Server-sent events in OpenAI's chunk format: the thinking as `reasoning_content` deltas, the answer as
    `content` deltas, a last chunk with the finish reason (and `bard`), then usage if asked, then [DONE]."""

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    while True:
        event = await job.events.get()
        if event[0] == "delta":
            yield chunk({"reasoning_content" if event[1] == "thinking" else "content": event[2]})
        elif event[0] == "error":
            yield f"data: {json.dumps({'error': {'message': event[1], 'type': 'server_error'}})}\n\n"
            break
        else:
            result: Result = event[1]
            yield chunk({}, result.finish_reason, bard=_bard(result))
            if include_usage:
                body = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": name,
                        "choices": [], "usage": _usage(result)}  # fmt: skip
                yield f"data: {json.dumps(body)}\n\n"
            break
    yield "data: [DONE]\n\n"


def serve(model: BudgetedModel, name: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (uvicorn, one process: the model is loaded once and shared by every request)."""
    import uvicorn

    uvicorn.run(create_app(model, name), host=host, port=port, log_level="warning")
