"""Evals: the templates that fill prompts and graders from each item, and the graders that score a sample (see docs/evals.md)."""
