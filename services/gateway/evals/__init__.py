"""/v1/evals: models evaluated on an organization's items, sampled here and graded by the trainer.

The API is described in docs/evals.md.
"""
