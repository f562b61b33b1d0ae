"""``/v1/chat/completions``: chat with a base, fine-tuned or checkpoint model, plain or streamed
(docs/research/openai_api.md §1.5)."""
