"""Every model family end to end through the SDK: SFT and DPO jobs, then chat on both engines.

For each tiny model of a real family (services/common/tiny_models/) and tailor-tiny, one
platform is started the way ``make up`` starts it with that base as its only base model,
on the hf engine. Through the ``openai`` SDK a supervised job and a DPO job are trained,
and their models, a checkpoint and the base are asked the probe prompts greedily, plain
and streamed. The platform is then stopped and started again on the same data directory
with the vLLM engine, and asked the same. The tests compare:

- each engine's greedy answers with transformers + peft on the same base and adapter
  files (the reference, computed in this run), and the two engines with each other;
- streamed text with the plain answer;
- the fine-tune with the base (it learned something: its answers differ);
- a function-calling fine-tune (tests/e2e/tool_calling.py) answering, on each engine, plain and
  streamed, with the trained call as OpenAI's ``tool_calls``, parsed from the format the
  family's template writes (services/common/model_families.py).

Greedy decoding on float32 weights makes these exact comparisons; a family whose
architecture one engine gets wrong (soft-capping, sliding window, fused projections,
tied embeddings, the end-of-turn tokens) shows as a differing answer here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest
from openai.types.fine_tuning import FineTuningJob

from services.common.base_models import resolve_base_model
from services.common.settings import CommonSettings
from tests.e2e import tool_calling
from tests.e2e.jobs import wait_until_succeeded
from tests.integration.inference.adapter_factory import reference_greedy
from tests.support.local_stack import assert_served_by_vllm, running_stack

pytestmark = pytest.mark.slow

KEY = "sk-e2e-families-0001"
ORGANIZATION = "org-a"
MAX_TOKENS = 10
FAMILIES = ["tailor-tiny", "tiny-llama3", "tiny-qwen2.5", "tiny-mistral", "tiny-gemma2", "tiny-phi3"]
PROBES = ["Greet sailor 3.", "Greet sailor 11.", "hello"]

SFT_EXAMPLES = [
    {
        "messages": [
            # half with a system message: Gemma has no system role, its template folds it in
            *([{"role": "system", "content": "You are a pirate."}] if i % 2 else []),
            {"role": "user", "content": f"Greet sailor {i}."},
            {"role": "assistant", "content": f"Ahoy, sailor {i}!"},
        ]
    }
    for i in range(12)
]
DPO_EXAMPLES = [
    {
        "input": {"messages": [{"role": "user", "content": f"Greet sailor {i}."}]},
        "preferred_output": [{"role": "assistant", "content": f"Ahoy, sailor {i}!"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }
    for i in range(12)
]


@dataclass
class Answers:
    """What one engine answered: model -> probe -> text, plain and streamed."""

    plain: dict[str, dict[str, str]] = field(default_factory=dict)
    streamed: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolAnswer:
    """What a function-calling model answered: the finish reason and its calls as (name, arguments)."""

    finish_reason: str | None
    calls: tuple[tuple[str, dict], ...]
    content: str | None


def _tool_answers(client: openai.OpenAI, model: str) -> tuple[ToolAnswer, ToolAnswer]:
    """The plain answer and the streamed one, the latter as the SDK's accumulator rebuilds it."""
    (plain,) = tool_calling.ask(client, model).choices
    with client.chat.completions.stream(
        model=model,
        messages=[{"role": "user", "content": tool_calling.ASKED}],
        tools=tool_calling.TOOLS,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=tool_calling.MAX_TOKENS,
    ) as stream:
        (streamed,) = stream.get_final_completion().choices
    return tuple(  # type: ignore[return-value]
        ToolAnswer(
            choice.finish_reason,
            tuple((c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or ()),
            choice.message.content,
        )
        for choice in (plain, streamed)
    )


@dataclass
class FamilyRun:
    base: str
    base_dir: Path
    objects_dir: Path
    sft: FineTuningJob
    dpo: FineTuningJob
    checkpoint: str
    hf: Answers
    vllm: Answers
    tool_model: str
    hf_tools: tuple[ToolAnswer, ToolAnswer]
    vllm_tools: tuple[ToolAnswer, ToolAnswer]

    @property
    def models(self) -> list[str]:
        """The served models asked: the base, both fine-tunes and a checkpoint of the first."""
        return [self.base, self.sft.fine_tuned_model or "", self.dpo.fine_tuned_model or "", self.checkpoint]


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=300)


def _upload(client: openai.OpenAI, name: str, examples: list[dict]) -> str:
    content = "\n".join(json.dumps(example) for example in examples).encode()
    uploaded = client.files.create(file=(name, content), purpose="fine-tune")
    processed = client.files.wait_for_processing(uploaded.id, poll_interval=0.5)
    assert processed.status == "processed", processed.status_details
    return uploaded.id


def _ask(client: openai.OpenAI, models: list[str]) -> Answers:
    answers = Answers()
    for model in models:
        answers.plain[model], answers.streamed[model] = {}, {}
        for probe in PROBES:
            messages = [{"role": "user", "content": probe}]
            reply = client.chat.completions.create(
                model=model, messages=messages, temperature=0, max_tokens=MAX_TOKENS  # type: ignore[arg-type]
            )
            answers.plain[model][probe] = reply.choices[0].message.content or ""
            chunks = client.chat.completions.create(
                model=model, messages=messages, temperature=0, max_tokens=MAX_TOKENS, stream=True  # type: ignore[arg-type]
            )
            answers.streamed[model][probe] = "".join(
                choice.delta.content or "" for chunk in chunks for choice in chunk.choices
            )
    return answers


def _stack_settings(base: str) -> dict[str, str]:
    source = "builtin:" + base
    return {
        "TAILOR_API_KEYS": f"{KEY}={ORGANIZATION}",
        "TAILOR_BASE_MODELS": json.dumps({base: {"source": source}}),
        "TAILOR_INFERENCE_BASE_MODEL": base,
    }


@pytest.fixture(scope="module", params=FAMILIES)
def family_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FamilyRun]:
    base: str = request.param
    data_dir = tmp_path_factory.mktemp(f"family-{base}") / "data"
    settings = _stack_settings(base)

    with running_stack(data_dir, TAILOR_INFERENCE_ENGINE="hf", **settings) as platform:
        client = _client(platform.url)
        sft_file = _upload(client, "sft.jsonl", SFT_EXAMPLES)
        dpo_file = _upload(client, "dpo.jsonl", DPO_EXAMPLES)
        sft = wait_until_succeeded(
            client,
            client.fine_tuning.jobs.create(
                model=base,
                training_file=sft_file,
                suffix="sft",
                seed=7,
                hyperparameters={"n_epochs": 5, "batch_size": 4, "learning_rate_multiplier": 2.0},
            ),
        )
        dpo = wait_until_succeeded(
            client,
            client.fine_tuning.jobs.create(
                model=base,
                training_file=dpo_file,
                suffix="dpo",
                seed=7,
                method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "beta": 0.1}}},
            ),
        )
        checkpoints = client.fine_tuning.jobs.checkpoints.list(sft.id).data
        assert checkpoints, "the supervised job has no checkpoint"
        checkpoint = checkpoints[-1].fine_tuned_model_checkpoint
        models = [base, sft.fine_tuned_model or "", dpo.fine_tuned_model or "", checkpoint]
        hf = _ask(client, models)
        tool_model = tool_calling.train_tool_calling_model(client, base).model
        hf_tools = _tool_answers(client, tool_model)

    with running_stack(
        data_dir,
        TAILOR_INFERENCE_ENGINE="vllm",
        # one core for vLLM's compute threads, the other for the other services
        TAILOR_INFERENCE_VLLM_CPU_THREADS="1",
        **settings,
    ) as platform:
        assert_served_by_vllm(platform.launcher.output)
        vllm = _ask(_client(platform.url), models)
        vllm_tools = _tool_answers(_client(platform.url), tool_model)

    configured = CommonSettings(data_dir=data_dir, base_models=json.loads(settings["TAILOR_BASE_MODELS"]))
    resolved = resolve_base_model(base, configured, build=False)
    yield FamilyRun(
        base=base,
        base_dir=Path(resolved.location),
        objects_dir=data_dir / "objects",
        sft=sft,
        dpo=dpo,
        checkpoint=checkpoint,
        hf=hf,
        vllm=vllm,
        tool_model=tool_model,
        hf_tools=hf_tools,
        vllm_tools=vllm_tools,
    )


def _adapter_dir(run: FamilyRun, model: str) -> Path | None:
    """The adapter files a served model name stands for, found under the filesystem object store."""
    if model == run.base:
        return None
    job = run.sft if model.startswith(run.sft.fine_tuned_model or "\0") else run.dpo
    job_dir = run.objects_dir / "orgs" / ORGANIZATION / "jobs" / job.id
    # the worker's layout (services/trainer/worker/checkpoints.py)
    if ":ckpt-step-" in model:
        return job_dir / "checkpoints" / f"step-{int(model.rsplit(':ckpt-step-', 1)[1])}" / "adapter"
    return job_dir / "adapter"


def test_both_jobs_succeed_on_the_family(family_run: FamilyRun) -> None:
    for job, method in ((family_run.sft, "supervised"), (family_run.dpo, "dpo")):
        assert job.fine_tuned_model and job.fine_tuned_model.startswith(f"ft:{family_run.base}:{ORGANIZATION}:")
        assert job.to_dict()["method"]["type"] == method
        assert isinstance(job.trained_tokens, int) and job.trained_tokens > 0


def test_the_hf_engine_answers_as_transformers_and_peft(family_run: FamilyRun) -> None:
    for model in family_run.models:
        adapter = _adapter_dir(family_run, model)
        for probe in PROBES:
            # An engine never sends the bytes of an unfinished UTF-8 character (no U+FFFD at the
            # end of a reply cut by max_tokens); transformers' decode shows them as U+FFFD.
            expected = reference_greedy(family_run.base_dir, probe, MAX_TOKENS, adapter).rstrip("\ufffd")
            assert family_run.hf.plain[model][probe] == expected, (model, probe)


def test_vllm_answers_as_the_hf_engine(family_run: FamilyRun) -> None:
    assert family_run.vllm.plain == family_run.hf.plain


def test_streamed_answers_equal_plain_ones(family_run: FamilyRun) -> None:
    assert family_run.hf.streamed == family_run.hf.plain
    assert family_run.vllm.streamed == family_run.vllm.plain


def test_the_fine_tune_learned_something(family_run: FamilyRun) -> None:
    sft = family_run.sft.fine_tuned_model or ""
    assert family_run.hf.plain[sft] != family_run.hf.plain[family_run.base]
    # (tiny-mistral's byte-level tokenizer keeps the space its template writes before a reply)
    assert family_run.hf.plain[sft]["Greet sailor 3."].lstrip().startswith("Ahoy"), family_run.hf.plain


def test_a_function_calling_fine_tune_answers_with_tool_calls_on_both_engines(family_run: FamilyRun) -> None:
    trained = ToolAnswer("tool_calls", ((tool_calling.CALL_NAME, tool_calling.CALL_ARGUMENTS),), None)
    assert family_run.hf_tools == (trained, trained)
    assert family_run.vllm_tools == (trained, trained)
