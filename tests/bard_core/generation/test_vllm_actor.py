"""The `vllm` backend's path up to vLLM itself, which needs a GPU and cannot be installed here: a stand-in `vllm`
package (written below, put on the path of a subprocess and of its Ray workers) takes the place of the library
at its boundary only. It accepts only the argument names vLLM 0.30 has (so a misspelt one fails as vLLM would),
answers deterministically from each request's seed, and records every call. bard's own code runs unchanged:
`make_backend`, `VLLMBackend`, and in the second test the `teacher` and `compress` stages, their engine actors
asking a real local Ray (which declares two GPUs it does not have) for their GPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

STAND_IN = '''
"""Stand-in for vLLM's offline engine (tests only): records each call as a JSON line in $VLLM_STAND_IN_LOG."""
import json
import os
from types import SimpleNamespace

# Keyword arguments that vllm.SamplingParams and vllm.LLM (through EngineArgs) accept, a subset of vLLM 0.30's.
SAMPLING = {"n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k",
            "min_p", "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs",
            "skip_special_tokens", "include_stop_str_in_output"}
ENGINE = {"tokenizer", "tensor_parallel_size", "pipeline_parallel_size", "dtype", "gpu_memory_utilization",
          "max_model_len", "seed", "trust_remote_code", "enforce_eager", "quantization", "enable_prefix_caching"}


def record(call, **fields):
    with open(os.environ["VLLM_STAND_IN_LOG"], "a") as f:
        f.write(json.dumps({"call": call, "pid": os.getpid(), **fields}) + "\\n")


class SamplingParams:
    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - SAMPLING)
        if unknown:
            raise TypeError(f"SamplingParams: unexpected keyword argument(s) {unknown}")
        self.kwargs = kwargs


def answer(seed, max_tokens, opened=False):
    """A closed thinking block and a boxed answer, its length set by the seed; cut at max_tokens words. When the
    prompt opened the thinking, the reply starts inside it."""
    words = ["<think>"] * (not opened) + ["step"] * (3 + seed % 5) + ["</think>", "\\\\boxed{%d}" % (seed % 7)]
    finish = "length" if len(words) > max_tokens else "stop"
    words = words[:max_tokens]
    return SimpleNamespace(text=" ".join(words), token_ids=list(range(len(words))), finish_reason=finish)


class LLM:
    def __init__(self, model, **kwargs):
        unknown = sorted(set(kwargs) - ENGINE)
        if unknown:
            raise TypeError(f"LLM: unexpected keyword argument(s) {unknown}")
        self.model = model
        record("LLM", model=model, kwargs=kwargs, gpus=os.environ.get("CUDA_VISIBLE_DEVICES"))

    def get_tokenizer(self):
        return SimpleNamespace(decode=lambda ids: "".join(map(chr, ids)))  # the chat prompts' ids are characters

    def _outputs(self, prompts, sampling_params, chat=False):
        assert isinstance(sampling_params, list) and len(sampling_params) == len(prompts), "one SamplingParams each"
        outs = []
        for prompt, params in zip(prompts, sampling_params):
            p = params.kwargs
            if chat:  # vLLM renders the template, then hands the engine its token ids only: the text is not kept
                text = "".join(f"<|{m['role']}|>{m['content']}" for m in prompt) + "<|assistant|>"
                text += "<think>\\n" if "R1-Distill" in self.model else ""  # DeepSeek-R1-Distill's template opens it
                prompt, ids = None, [ord(c) for c in text]
            else:
                ids = list(range(len(json.dumps(prompt).split())))
            out = answer(p["seed"], p.get("max_tokens", 16), opened=chat and "R1-Distill" in self.model)
            outs.append(SimpleNamespace(prompt=prompt, prompt_token_ids=ids, outputs=[out]))
        return outs

    def generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None):
        outs = self._outputs(prompts, sampling_params)
        record("generate", prompts=prompts, sampling=[p.kwargs for p in sampling_params], use_tqdm=use_tqdm,
               texts=[o.outputs[0].text for o in outs])
        return outs

    def chat(self, messages, sampling_params=None, use_tqdm=True, lora_request=None, chat_template=None,
             chat_template_content_format="auto", add_generation_prompt=True, continue_final_message=False,
             tools=None, chat_template_kwargs=None, mm_processor_kwargs=None):
        outs = self._outputs(messages, sampling_params, chat=True)
        record("chat", messages=messages, sampling=[p.kwargs for p in sampling_params], use_tqdm=use_tqdm,
               chat_template_kwargs=chat_template_kwargs, texts=[o.outputs[0].text for o in outs])
        return outs
'''


def stand_in(tmp_path: Path) -> dict[str, str]:
    """Write the stand-in package; return the environment that puts it first on a subprocess's path."""
    (tmp_path / "stand_in" / "vllm").mkdir(parents=True)
    (tmp_path / "stand_in" / "vllm" / "__init__.py").write_text(STAND_IN)
    return {**os.environ, "PYTHONPATH": f"{tmp_path / 'stand_in'}{os.pathsep}{ROOT}",
            "VLLM_STAND_IN_LOG": str(tmp_path / "calls.jsonl")}  # fmt: skip


def calls(tmp_path: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


def run(code: str, env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


def test_the_backend_translates_requests_into_vllm_calls(tmp_path):
    env = stand_in(tmp_path)
    out = run(
        """
        import dataclasses, json
        from bard_core.generation import GenerationRequest, SamplingParams, VLLMBackendConfig, make_backend

        chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
        backend = make_backend(VLLMBackendConfig(
            backend="vllm", model="/models/Qwen3-32B", tensor_parallel_size=4, max_model_len=16384, dtype="bfloat16",
            chat_template_kwargs={"enable_thinking": False}))
        done = backend.generate([
            GenerationRequest(uid="a", messages=chat, sampling=SamplingParams(max_tokens=64, n=2, seed=10)),
            GenerationRequest(uid="b", prompt="Q: 1+1=", sampling=SamplingParams(temperature=0, max_tokens=3, seed=5)),
            GenerationRequest(uid="c", messages=chat[1:], sampling=SamplingParams(max_tokens=64, seed=1)),
        ])
        plain = make_backend(VLLMBackendConfig(backend="vllm", model="m"))  # no template kwargs, no context length
        done += plain.generate([GenerationRequest(uid="d", messages=chat, sampling=SamplingParams(max_tokens=5))])
        r1 = make_backend(VLLMBackendConfig(backend="vllm", model="/models/DeepSeek-R1-Distill-Qwen-7B"))
        done += r1.generate([GenerationRequest(uid="e", messages=chat, sampling=SamplingParams(max_tokens=64, seed=2))])
        print(json.dumps([dataclasses.asdict(c) for c in done]))
        """,
        env,
    )
    completions = json.loads(out.strip().splitlines()[-1])
    llm, chat, generate, llm2, chat2, _, chat3 = calls(tmp_path)

    assert (llm["call"], llm["model"]) == ("LLM", "/models/Qwen3-32B")
    assert llm["kwargs"] == {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.9, "dtype": "bfloat16",
                             "max_model_len": 16384}  # fmt: skip
    assert (llm2["call"], llm2["model"], llm2["kwargs"]) == (
        "LLM", "m", {"tensor_parallel_size": 1, "gpu_memory_utilization": 0.9, "dtype": "auto"})  # fmt: skip

    # Chat requests go through `chat` (the model's template applied, with its kwargs), one engine request per
    # sample with n=1 and seed + sample_idx; raw prompts through `generate`. bard sends no stop strings: EOS ends.
    assert chat["call"] == "chat" and chat["use_tqdm"] is False
    assert chat["chat_template_kwargs"] == {"enable_thinking": False}
    assert chat["messages"] == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        [{"role": "user", "content": "2+2?"}],
    ]
    assert chat["sampling"] == [
        {"n": 1, "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "seed": 10},
        {"n": 1, "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "seed": 11},
        {"n": 1, "temperature": 0.6, "top_p": 0.95, "max_tokens": 64, "seed": 1},
    ]
    assert generate["call"] == "generate" and generate["prompts"] == ["Q: 1+1="]
    assert generate["sampling"] == [{"n": 1, "temperature": 0.0, "top_p": 0.95, "max_tokens": 3, "seed": 5}]
    assert chat2["call"] == "chat" and chat2["chat_template_kwargs"] is None, "empty kwargs are not sent"

    # Each output comes back as the Completion of its own request and sample, in request order.
    assert [(c["uid"], c["sample_idx"], c["seed"], c["model"]) for c in completions] == [
        ("a", 0, 10, "/models/Qwen3-32B"), ("a", 1, 11, "/models/Qwen3-32B"), ("b", 0, 5, "/models/Qwen3-32B"),
        ("c", 0, 1, "/models/Qwen3-32B"), ("d", 0, 0, "m"), ("e", 0, 2, "/models/DeepSeek-R1-Distill-Qwen-7B"),
    ]  # fmt: skip
    texts = chat["texts"][:2] + generate["texts"] + chat["texts"][2:] + chat2["texts"]
    assert [c["text"] for c in completions[:5]] == texts
    # R1-Distill's template opened the thinking, so the engine's text starts inside it: the opening is written back
    assert not chat3["texts"][0].startswith("<think>")
    assert completions[5]["text"] == "<think>\n" + chat3["texts"][0]
    completions = completions[:5]
    assert [c["finish_reason"] for c in completions] == ["stop", "stop", "length", "stop", "length"]
    assert [c["completion_tokens"] for c in completions] == [len(t.split()) for t in texts]
    assert completions[2]["prompt_tokens"] == 2 and completions[2]["completion_tokens"] == 3


def test_teacher_and_compress_stages_on_vllm_engine_actors(tmp_path, tiny_model):
    """The stages' own requests reach vLLM from Ray actors holding the GPUs each engine spans: the teacher's
    engine (tensor_parallel_size 2) gets two, the compressor's one, and its chat template kwargs arrive."""
    env = stand_in(tmp_path)
    source = tmp_path / "toy.jsonl"
    source.write_text("".join(json.dumps({"question": f"{i} plus one", "answer": str(i + 1)}) + "\n" for i in range(4)))
    config = tmp_path / "c.yaml"
    config.write_text(f"""
problems: {{sources: [{{kind: jsonl, path: '{source}'}}]}}
budget: {{tokenizer: '{tiny_model}/tokenizer.json'}}
budget_sampling: {{mode: uniform, min_budget: 1, max_budget: 4, per_chain: 1}}
teacher:
  generation: {{backend: vllm, model: '{tiny_model}', tensor_parallel_size: 2, max_model_len: 512}}
  sampling: {{temperature: 1.0, max_tokens: 16, n: 2, seed: 3}}
compress:
  generation: {{backend: vllm, model: '{tiny_model}', chat_template_kwargs: {{enable_thinking: false}}}}
  sampling: {{max_tokens: 12}}
  only_correct: false
ray: {{num_cpus: 2}}
""")
    out = run(
        """
        import json, os, sys
        import pyarrow.parquet as pq
        import ray
        from bard_core.config import load_config
        from tasks import graph

        # A local Ray declaring two GPUs (it only counts them), so that engine actors asking for GPUs are placed.
        ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, configure_logging=False)
        config = load_config(sys.argv[1], home=sys.argv[2])
        graph.build("problems", config)
        teacher = graph.build("teacher", config)
        compress = graph.build("compress", config)
        rows = [r for f in teacher.files("teacher_samples") for r in pq.read_table(f).to_pylist()]
        print(json.dumps({"pid": os.getpid(), "rows": rows, "rewrites": compress.rows("compressions")}))
        """,
        env,
        str(config),
        str(tmp_path / "home"),
    )
    result = json.loads(out.strip().splitlines()[-1])
    made = [c for c in calls(tmp_path) if c["call"] == "LLM"]
    assert [(c["model"], c["kwargs"]["tensor_parallel_size"], c["kwargs"].get("max_model_len")) for c in made] == [
        (tiny_model, 2, 512), (tiny_model, 1, None)]  # fmt: skip
    assert [len(c["gpus"].split(",")) for c in made] == [2, 1], "each engine actor holds the GPUs its engine spans"
    assert result["pid"] not in {c["pid"] for c in calls(tmp_path)}, "vLLM ran in the actors, not in the driver"

    teacher_chats = [c for c in calls(tmp_path) if c["call"] == "chat" and c["pid"] == made[0]["pid"]]
    sent = [s for c in teacher_chats for s in c["sampling"]]
    rows = result["rows"]
    assert len(rows) == 8 and len(sent) == 8
    assert [r["seed"] for r in rows] == [s["seed"] for s in sent]
    assert all(s == {"n": 1, "temperature": 1.0, "top_p": 0.95, "max_tokens": 16, "seed": s["seed"]} for s in sent)
    assert [r["seed"] for r in rows[1::2]] == [r["seed"] + 1 for r in rows[::2]], "sample i: the problem's seed + i"
    assert len({r["seed"] for r in rows[::2]}) == 4, "each problem has its own seed"
    assert [r["completion"] for r in rows] == [t for c in teacher_chats for t in c["texts"]]
    assert all(r["model"] == tiny_model and r["finish_reason"] == "stop" for r in rows)
    assert all(c["chat_template_kwargs"] is None for c in teacher_chats)

    compress_chats = [c for c in calls(tmp_path) if c["call"] == "chat" and c["pid"] == made[1]["pid"]]
    assert compress_chats and all(c["chat_template_kwargs"] == {"enable_thinking": False} for c in compress_chats)
    assert result["rewrites"] > 0
