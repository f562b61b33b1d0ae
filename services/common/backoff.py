"""The capped doubling delay every retry loop of Tailor waits by.

Restarting a crashed service (``make up``'s supervisor), retrying a webhook delivery (with
jitter on top), and the eval sampler waiting for work or for the trainer all wait
``first_s``, then twice that, and so on, never more than ``cap_s``.
"""

from __future__ import annotations


def doubling_delay(attempt: int, first_s: float, cap_s: float) -> float:
    """Seconds to wait before retry ``attempt`` (1 for the first): ``first_s * 2**(attempt - 1)``,
    at most ``cap_s``."""
    return min(cap_s, first_s * 2 ** min(max(attempt, 1) - 1, 64))
