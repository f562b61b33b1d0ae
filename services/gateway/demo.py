"""``make demo``: fine-tune tailor-tiny on a small bundled dataset and chat with the result.

Runs against a running ``make up`` (or any Tailor gateway) with nothing but the official
``openai`` SDK, printing each step: upload the dataset, create the job, follow its events
until it finishes, list its checkpoints, then chat with the fine-tuned model, streamed.

    python -m services.gateway.demo [--base-url URL] [--api-key KEY] [--epochs N]

The endpoint and key are chosen as the ``tailor`` command chooses them
(:mod:`services.cli.endpoint`: the options, else ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``,
else the local stack as ``make up`` runs it). A key that cannot be found, or that the
gateway refuses, ends the demo with a message saying which variable to set.

tailor-tiny is a tiny model with random weights, so what it says after a few seconds of
training is more noise than pirate; the demo shows the mechanics, which are the same for a
real base model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import openai

from services.cli.endpoint import choose_endpoint, no_key_message

DATASET = Path(__file__).with_name("demo_train.jsonl")
BASE_MODEL = "tailor-tiny"
TERMINAL = ("succeeded", "failed", "cancelled")
QUESTION = "What is your name?"


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def client_from(args: argparse.Namespace) -> openai.OpenAI:
    """The SDK's client for the chosen gateway, after one call that shows the key is accepted."""
    endpoint = choose_endpoint(args.base_url, args.api_key)
    if not endpoint.api_key:
        sys.exit(no_key_message(endpoint))
    base_url, api_key, source = endpoint.base_url, endpoint.api_key, endpoint.key_source
    print(f"Tailor at {base_url} (API key from {source})")
    client = openai.OpenAI(base_url=base_url, api_key=api_key)
    try:
        client.models.list()
    except openai.AuthenticationError:
        sys.exit(
            f"the gateway at {base_url} refused the API key from {source}. Set the key it was "
            "started with: export OPENAI_API_KEY=<key> (with TAILOR_API_KEYS=key=org,...: its first key)"
        )
    except openai.APIConnectionError:
        sys.exit(
            f"no Tailor gateway answers at {base_url}: start the platform with `make up`, "
            "or set OPENAI_BASE_URL to the gateway's /v1 URL"
        )
    return client


def follow(client: openai.OpenAI, job_id: str, poll_s: float) -> openai.types.fine_tuning.FineTuningJob:
    """Prints the job's events as they appear (oldest first) until it finishes; returns the job."""
    seen: set[str] = set()
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
        for event in reversed(events):  # the API lists newest first
            if event.id not in seen:
                seen.add(event.id)
                stamp = time.strftime("%H:%M:%S", time.localtime(event.created_at))
                print(f"  {stamp} [{event.level}] {event.message}", flush=True)
        if job.status in TERMINAL:
            return job
        time.sleep(poll_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="the gateway's /v1 URL")
    parser.add_argument("--api-key", help="an API key of the gateway")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status polls")
    args = parser.parse_args()
    client = client_from(args)

    step(f"Uploading {DATASET.name} ({sum(1 for _ in DATASET.open())} examples)")
    with DATASET.open("rb") as dataset:
        uploaded = client.files.create(file=dataset, purpose="fine-tune")
    uploaded = client.files.wait_for_processing(uploaded.id, poll_interval=0.5)
    print(f"  {uploaded.id}: {uploaded.bytes} bytes, status {uploaded.status}")
    if uploaded.status != "processed":
        sys.exit(f"the dataset was refused: {uploaded.status_details}")

    step(f"Fine-tuning {BASE_MODEL} for {args.epochs} epochs")
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL,
        training_file=uploaded.id,
        suffix="demo-pirate",
        hyperparameters={"n_epochs": args.epochs, "batch_size": 4},
    )
    print(f"  {job.id}: {job.status}")

    step("Following the job's events")
    job = follow(client, job.id, args.poll)
    if job.status != "succeeded" or job.fine_tuned_model is None:
        sys.exit(f"the job ended {job.status}: {job.error.message if job.error else 'no error given'}")
    took = (job.finished_at or job.created_at) - job.created_at
    print(f"  {job.status} in {took} s: {job.fine_tuned_model}")

    step("Checkpoints")
    for checkpoint in client.fine_tuning.jobs.checkpoints.list(job.id).data:
        name, loss = checkpoint.fine_tuned_model_checkpoint, checkpoint.metrics.train_loss
        print(f"  step {checkpoint.step_number}: {name} (train loss {loss})")

    step(f"Chatting with {job.fine_tuned_model}")
    print(f"  user: {QUESTION}\n  assistant: ", end="", flush=True)
    stream = client.chat.completions.create(
        model=job.fine_tuned_model,
        messages=[
            {"role": "system", "content": "You are Captain Tailor, a pirate."},
            {"role": "user", "content": QUESTION},
        ],
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        elif chunk.usage is not None:
            print(f"\n  ({chunk.usage.completion_tokens} tokens)")

    step("Your models")
    for model in client.models.list().data:
        print(f"  {model.id} (owned by {model.owned_by})")
    print("\nDone. Delete the model with: client.models.delete(" + repr(job.fine_tuned_model) + ")")


if __name__ == "__main__":
    main()
