"""The gateway: Tailor's public, OpenAI-compatible HTTP API over the internal gRPC services."""
