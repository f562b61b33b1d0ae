"""``/v1/completions``: legacy text completions of a prompt, plain or streamed (openai_api.md §1.6)."""
