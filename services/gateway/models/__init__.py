"""``/v1/models``: base models and the organization's fine-tuned models and checkpoints
(docs/research/openai_api.md §1.4)."""
