"""Image engines and the registry that builds them from settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from swiftshot.engines.base import (
    Cancelled,
    Engine,
    EngineConfigError,
    EngineError,
    FakeEngine,
    StepCallback,
)

if TYPE_CHECKING:
    from swiftshot.config import Settings

ENGINE_NAMES = ("studio", "diffusion")

__all__ = [
    "Cancelled", "Engine", "EngineConfigError", "EngineError", "FakeEngine", "StepCallback",
    "ENGINE_NAMES", "create_engine",
]


def create_engine(name: str, settings: Settings | None = None, *, model: str | None = None) -> Engine:
    """Build (not load) the engine called ``name``.

    Raises EngineConfigError for an unknown name, listing the known ones.
    """
    from swiftshot.config import Settings

    settings = settings or Settings()
    if name == "studio":
        from swiftshot.engines.studio import StudioEngine

        return StudioEngine(settings.engine.studio)
    if name == "diffusion":
        from swiftshot.engines.diffusion import DiffusionEngine

        cfg = settings.engine.diffusion
        if model is not None:
            cfg = cfg.model_copy(update={"model": model})
        return DiffusionEngine(cfg)
    if name == "fake":
        return FakeEngine()
    raise EngineConfigError(f"unknown engine {name!r}; known engines: {', '.join(ENGINE_NAMES)}")
