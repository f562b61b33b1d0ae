"""``/v1/fine_tuning/jobs``: jobs, their events and checkpoints (docs/research/openai_api.md §1.2)."""
