"""The trainer service. Fine-tuning jobs, their workers, events, checkpoints and the model registry."""
