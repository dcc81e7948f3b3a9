"""The hf backend on a tiny Qwen3 model built from config: counts, finish reasons, seeds, batching."""

import pytest

from bard_core.generation import (
    Completion,
    GenerationError,
    GenerationRequest,
    HFBackendConfig,
    SamplingParams,
    make_backend,
)

QUESTIONS = ["one plus two", "three times four is", "what is ten minus one plus nine plus five", "two"]


def chat(question: str) -> list[dict]:
    return [{"role": "system", "content": "think step"}, {"role": "user", "content": question}]


@pytest.fixture(scope="module")
def backend(tiny_model):
    return make_backend(HFBackendConfig(backend="hf", model=tiny_model, batch_size=4))


@pytest.fixture(scope="module")
def one_at_a_time(tiny_model):
    return make_backend(HFBackendConfig(backend="hf", model=tiny_model, batch_size=1))


def key(c: Completion):
    return (c.uid, c.sample_idx)


def test_order_seeds_token_counts_and_finish_reasons(backend):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(backend.config.model)
    sampling = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=20, n=4, seed=100)
    requests = [GenerationRequest(uid=f"q{i}", messages=chat(q), sampling=sampling) for i, q in enumerate(QUESTIONS)]
    requests.append(GenerationRequest(uid="raw", prompt="one plus one equals", sampling=sampling))
    out = backend.generate(requests)

    assert [key(c) for c in out] == [(r.uid, i) for r in requests for i in range(4)]
    assert [c.seed for c in out] == [100, 101, 102, 103] * len(requests)
    for c, request in zip(out, [r for r in requests for _ in range(4)]):
        if request.messages:
            text = tokenizer.apply_chat_template(request.messages, tokenize=False, add_generation_prompt=True)
            assert c.prompt_tokens == len(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            assert c.prompt_tokens == len(["one", " ", "plus", " ", "one", " ", "equals"])  # spaces are tokens
        assert 1 <= c.completion_tokens <= 20
        assert c.finish_reason in ("stop", "length")
        if c.finish_reason == "length":
            assert c.completion_tokens == 20
        assert c.model == backend.config.model
    # The near-uniform tiny model stops (EOS) within 20 tokens about half the time: both must occur.
    assert {c.finish_reason for c in out} == {"stop", "length"}
    for r in requests:  # the samples of a request have different seeds, so different texts
        assert len({c.text for c in out if c.uid == r.uid}) >= 3


def test_samples_do_not_depend_on_batching_or_order(backend, one_at_a_time):
    requests = [
        GenerationRequest(
            uid=f"q{i}",
            messages=chat(q),
            # different max_tokens in one batch: each row is cut at its own limit
            sampling=SamplingParams(temperature=0.9, top_p=0.9, max_tokens=8 + 6 * i, n=3, seed=7 * i),
        )
        for i, q in enumerate(QUESTIONS)
    ]
    batched = backend.generate(requests)
    again = backend.generate(requests)
    alone = {key(c): c for c in one_at_a_time.generate(requests[::-1])}
    assert batched == again
    assert batched == [alone[key(c)] for c in batched]
    for c, r in zip(batched, [r for r in requests for _ in range(3)]):
        assert c.completion_tokens <= r.sampling.max_tokens

    reseeded = backend.generate(
        [GenerationRequest(uid=r.uid, messages=r.messages, sampling=r.sampling.model_copy(update={"seed": 1000}))
         for r in requests]
    )  # fmt: skip
    assert sum(a.text != b.text for a, b in zip(batched, reseeded)) >= len(batched) // 2


def test_greedy_batch_equals_single_and_plain_transformers(backend, one_at_a_time):
    import torch

    sampling = SamplingParams(temperature=0, max_tokens=12)
    requests = [GenerationRequest(uid=f"q{i}", messages=chat(q), sampling=sampling) for i, q in enumerate(QUESTIONS)]
    batched = backend.generate(requests)  # prompts of different lengths: left padding at work
    assert batched == one_at_a_time.generate(requests)

    # The reference: transformers' own greedy decoding of each unpadded prompt.
    for c, r in zip(batched, requests):
        ids = torch.tensor([backend.prompt_ids(r)])
        with torch.inference_mode():
            ref = backend.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False
            )
        generated = ref[0, ids.shape[1] :].tolist()
        assert c.completion_tokens == len(generated)
        assert c.text == backend.tokenizer.decode(generated, skip_special_tokens=True)


def test_a_request_needs_messages_or_prompt():
    with pytest.raises(GenerationError, match="exactly one"):
        GenerationRequest(uid="x", sampling=SamplingParams(max_tokens=4))
    with pytest.raises(GenerationError, match="exactly one"):
        GenerationRequest(uid="x", prompt="a", messages=[], sampling=SamplingParams(max_tokens=4))


def test_chat_template_kwargs_reach_qwen3s_own_chat_template(tiny_model, tmp_path):
    """`chat_template_kwargs: {enable_thinking: false}` renders Qwen3's template with its thinking switched off:
    the generation prompt closes an empty thinking block, so the model answers without deliberating."""
    from tests.bard_core.generation.local_models import with_qwen3_chat_template

    model = str(with_qwen3_chat_template(tiny_model, tmp_path / "qwen3-template"))
    request = GenerationRequest(uid="q", messages=chat("one plus two"), sampling=SamplingParams(max_tokens=2))
    thinking = make_backend(HFBackendConfig(backend="hf", model=model))
    off = make_backend(HFBackendConfig(backend="hf", model=model, chat_template_kwargs={"enable_thinking": False}))
    on_text = thinking.tokenizer.decode(thinking.prompt_ids(request))
    assert on_text.startswith("<|im_start|>system\nthink step<|im_end|>\n") and on_text.endswith("<|im_start|>assistant\n")
    assert off.tokenizer.decode(off.prompt_ids(request)) == on_text + "<think>\n\n</think>\n\n"
    (c_on,), (c_off,) = thinking.generate([request]), off.generate([request])
    assert c_off.prompt_tokens == c_on.prompt_tokens + 6  # <think> \n \n </think> \n \n
