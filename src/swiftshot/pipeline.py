"""One request's recipe: which engine, then which product operations, in order.

``run_batch`` is the single place the request path turns specs into master images; the worker,
the CLI and the batch jobs all call it.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from swiftshot.engines.base import Engine, StepCallback
from swiftshot.spec import RenderSpec

OPS_VERSION = "1"
"""Part of every cache key: bump when an operation's pixels change."""


def source_type_for(spec: RenderSpec) -> str:
    """IPTC DigitalSourceType of the image this spec makes (Google Merchant asks for it)."""
    generated = spec.engine == "diffusion"
    if spec.product_sha256:
        return "compositeWithTrainedAlgorithmicMedia" if generated else "compositeSynthetic"
    return "trainedAlgorithmicMedia" if generated else "algorithmicMedia"


def run_batch(engine: Engine, specs: Sequence[RenderSpec],
              on_step: StepCallback | None = None) -> list[Image.Image]:
    """Render normalised specs that share one batch key: engine first, then each spec's ops."""
    return list(engine.run(specs, on_step))
