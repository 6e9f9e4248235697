"""When requests arrive: an open-loop schedule fixed before the run starts.

Inter-arrival gaps are gamma distributed with shape ``burstiness`` and mean ``1 / rate``
(as in vLLM's serving benchmark): burstiness 1 is a Poisson process; below 1 arrivals come in
clumps; above 1 they are more even. Because the schedule does not depend on how fast the server
answers, a slow server cannot slow the load down (no coordinated omission).
"""

from __future__ import annotations

import random


def arrival_times(rate: float, duration_s: float, *, burstiness: float = 1.0,
                  max_requests: int | None = None, rng: random.Random | None = None) -> list[float]:
    """Offsets in seconds from the start, strictly inside ``[0, duration_s)``."""
    if rate <= 0:
        raise ValueError(f"rate must be > 0 requests/s; got {rate}")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0 (1 = Poisson); got {burstiness}")
    if duration_s <= 0:
        raise ValueError(f"duration must be > 0 s; got {duration_s}")
    if max_requests is not None and max_requests < 1:
        raise ValueError(f"max requests must be ≥ 1; got {max_requests}")
    rng = rng or random.Random(0)
    scale = 1.0 / (rate * burstiness)
    times: list[float] = []
    t = 0.0
    while max_requests is None or len(times) < max_requests:
        t += rng.gammavariate(burstiness, scale)
        if t >= duration_s:
            break
        times.append(t)
    return times
