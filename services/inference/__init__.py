"""The inference service. Generation on one base model with many LoRA adapters."""
