"""The training worker: the process one fine-tuning job attempt runs in (``python -m services.trainer.worker``).

It claims its job from the trainer, downloads the files, trains a LoRA adapter (SFT or DPO) with
torch + transformers + peft, and reports progress, checkpoints and the outcome back over the
``WorkerService`` contract. By level:

- :mod:`.run`: the process (claim, heartbeats, SIGTERM, exit codes, reporting a failure);
- :mod:`.attempt`: one attempt's phases in order (download, prepare, train, checkpoint, finish);
- :mod:`.failures`: the failure codes, and the one mapping of exceptions to them;
- :mod:`.transfers`: bytes to and from the dataset service and (checkpoints) the trainer;
- :mod:`.preparation`: what is loaded before the first step (data, hyperparameters, model);
- :mod:`.data`, :mod:`.models`, :mod:`.lora`, :mod:`.hyperparameters`: what those are made of;
- :mod:`.training` (with :mod:`.packing`, :mod:`.scoring`, :mod:`.dpo`): the loop, free of I/O;
- :mod:`.progress`, :mod:`.results`, :mod:`.checkpoints`: what is reported and stored, and where.
"""
