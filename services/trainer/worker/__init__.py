"""The training worker: the process one fine-tuning job attempt runs in (``python -m services.trainer.worker``).

It claims its job from the trainer, downloads the files, trains a LoRA adapter (SFT or DPO) with
torch + transformers + peft, and reports progress, checkpoints and the outcome back over the
``WorkerService`` contract. :mod:`.run` is the orchestration; :mod:`.training` the loop.
"""
