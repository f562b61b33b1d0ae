"""``/v1/files``: upload, list, retrieve, delete and download files (docs/research/openai_api.md §1.1)."""
