"""``/v1/completions``: legacy text completions of a prompt, plain or streamed
(docs/research/openai_api.md §1.6)."""
