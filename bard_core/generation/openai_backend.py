"""The `openai` backend: any OpenAI-compatible HTTP endpoint, asynchronously, with plain httpx.

- `messages` go to `POST {base_url}/chat/completions`, a raw `prompt` to `POST {base_url}/completions`.
- One HTTP request per sample, carrying the sample's seed: servers such as `transformers serve`
  ignore `n`, and a per-sample seed keeps each sample reproducible where the server honours seeds.
- At most `concurrency` requests are in flight. Each attempt has a deadline of `timeout_s`. A 408,
  409, 429 or 5xx answer, a timeout, a connection error or an unreadable body is retried up to
  `max_attempts` in all, after a random wait of up to `backoff_base_s * 2**(k-1)` ("full jitter"),
  at most `backoff_cap_s`, and at least the server's numeric Retry-After within that cap. Any other
  4xx fails the whole call at once, naming the endpoint and the status.
- Reasoning returned apart from the answer (`reasoning_content`, as DeepSeek's API and vLLM's
  reasoning parsers do, or `reasoning`) is put back in front of it, both stripped, in DeepSeek-R1's
  own layout: "<think>\\n{reasoning}\\n</think>\\n\\n{content}" (whenever the field is present, even empty).
- The API key is read from the environment variable the config names when a call starts; it goes
  only into the Authorization header, never into messages, logs or the backend's attributes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Sequence

from bard_core.config.generation import OpenAIBackendConfig
from bard_core.generation.protocol import Completion, GenerationError, GenerationRequest, expand_samples

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 429}  # and every 5xx; the same set as OpenAI's own client retries
REASONING_FIELDS = ("reasoning_content", "reasoning")


class OpenAIBackend:
    def __init__(self, config: OpenAIBackendConfig):
        self.config = config

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Blocking; from code already inside an event loop, await `agenerate` instead."""
        return asyncio.run(self.agenerate(requests))

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        import httpx

        samples = expand_samples(requests)
        semaphore = asyncio.Semaphore(self.config.concurrency)
        timeout = httpx.Timeout(self.config.timeout_s, connect=self.config.connect_timeout_s)
        limits = httpx.Limits(max_connections=self.config.concurrency)
        async with httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/") + "/", headers=self._headers(), timeout=timeout, limits=limits
        ) as client:
            try:
                # A TaskGroup cancels the remaining samples as soon as one fails for good.
                async with asyncio.TaskGroup() as group:
                    tasks = [group.create_task(self._sample(client, semaphore, *s)) for s in samples]
            except* GenerationError as errors:
                raise errors.exceptions[0] from None
        return [task.result() for task in tasks]

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.api_key_env:
            key = os.environ.get(self.config.api_key_env)
            if not key:
                raise GenerationError(f"the API key variable {self.config.api_key_env} is not set")
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, request: GenerationRequest, seed: int) -> tuple[str, dict]:
        s = request.sampling
        body = {"model": self.config.model, "max_tokens": s.max_tokens, "temperature": s.temperature, "seed": seed}
        if s.temperature > 0:  # top_p means nothing to greedy decoding; some servers reject it there
            body["top_p"] = s.top_p
        if request.messages is not None:
            if self.config.chat_template_kwargs:
                body["chat_template_kwargs"] = self.config.chat_template_kwargs
            return "chat/completions", {**body, "messages": request.messages}
        return "completions", {**body, "prompt": request.prompt}

    async def _sample(
        self, client, semaphore: asyncio.Semaphore, request: GenerationRequest, sample_idx: int, seed: int
    ):
        import httpx

        path, body = self._body(request, seed)
        endpoint = f"{self.config.base_url.rstrip('/')}/{path}"
        for attempt in range(1, self.config.max_attempts + 1):
            retry_after = 0.0
            try:
                async with semaphore:
                    async with asyncio.timeout(self.config.timeout_s):
                        response = await client.post(path, json=body)
                        payload = response.json() if response.status_code == 200 else None
                if payload is not None:
                    return self._completion(payload, request, sample_idx, seed, endpoint)
                status = response.status_code
                if status not in RETRY_STATUSES and status < 500:
                    raise GenerationError(
                        f"{endpoint} answered {status} for request {request.uid!r} sample {sample_idx}: "
                        f"{response.text[:500]}"
                    )
                problem = f"status {status}"
                retry_after = _seconds(response.headers.get("retry-after"))
            except (httpx.TransportError, TimeoutError, ValueError) as err:
                # ValueError: a 200 whose body is not the JSON we expect (a cut-off reply, a proxy's page).
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
            if attempt == self.config.max_attempts:
                raise GenerationError(
                    f"{endpoint}: request {request.uid!r} sample {sample_idx} failed {attempt} times, last: {problem}"
                )
            ceiling = min(self.config.backoff_cap_s, self.config.backoff_base_s * 2 ** (attempt - 1))
            delay = min(self.config.backoff_cap_s, max(random.uniform(0, ceiling), retry_after))
            log.warning(
                "%s attempt %d/%d: %s; retrying in %.1f s", endpoint, attempt, self.config.max_attempts, problem, delay
            )
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _completion(self, payload: dict, request: GenerationRequest, sample_idx: int, seed: int, endpoint: str):
        try:
            choice = payload["choices"][0]
            usage = payload["usage"]
            if request.messages is not None:
                message = choice["message"]
                text = message.get("content") or ""
                reasoning = next((message[f] for f in REASONING_FIELDS if message.get(f) is not None), None)
                if reasoning is not None:
                    text = f"<think>\n{reasoning.strip()}\n</think>\n\n{text.strip()}"
            else:
                text = choice["text"]
            return Completion(
                uid=request.uid,
                sample_idx=sample_idx,
                text=text,
                prompt_tokens=int(usage["prompt_tokens"]),
                completion_tokens=int(usage["completion_tokens"]),
                finish_reason=choice["finish_reason"],
                seed=seed,
                model=self.config.model,
            )
        except (KeyError, IndexError, TypeError) as err:
            raise ValueError(f"unexpected reply from {endpoint}: missing {err}") from None


def _seconds(value: str | None) -> float:
    """A numeric Retry-After header in seconds; 0 for none or an HTTP date (rare; the backoff covers it)."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0
