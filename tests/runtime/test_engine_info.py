"""EngineInfo: the engine's own settings decide canonicalisation (not spec.py's tables)."""

from __future__ import annotations

import pickle

from swiftshot.config import DiffusionSettings
from swiftshot.engines.base import FakeEngine
from swiftshot.engines.studio import StudioEngine
from swiftshot.runtime.executor import EngineInfo, describe_engine
from swiftshot.spec import RenderSpec


def _diffusion(**kw):
    from swiftshot.engines.diffusion import DiffusionEngine

    eng = DiffusionEngine.__new__(DiffusionEngine)  # no model folder needed to describe it
    eng.settings = DiffusionSettings(**kw)
    eng.version = "test"
    return eng


def test_diffusion_default_steps_setting_takes_effect_in_the_key():
    four = describe_engine(_diffusion(default_steps=4, default_guidance=1.5))
    one = describe_engine(_diffusion())
    spec = RenderSpec(engine="diffusion", prompt="a vase")
    n4, k4 = four.normalized_and_key(spec, "3")
    n1, k1 = one.normalized_and_key(spec, "3")
    assert (n4.steps, n4.guidance) == (4, 1.5) and (n1.steps, n1.guidance) == (1, 0.0)
    assert k4 != k1
    # asking for the default explicitly is the same image
    assert four.normalized_and_key(spec.model_copy(update={"steps": 4, "guidance": 1.5}),
                                   "3")[1] == k4
    assert four.batch_fields == ("width", "height", "steps", "guidance")
    assert "previews" in four.capabilities and "inpaint" in four.capabilities


def test_studio_ignores_diffusion_fields_and_batches_by_size():
    info = describe_engine(StudioEngine())
    a = RenderSpec(prompt="white marble", steps=30, guidance=7.0, negative_prompt="x")
    b = RenderSpec(prompt="white marble")
    assert info.normalized_and_key(a, "3") == info.normalized_and_key(b, "3")
    assert not info.batch_gain
    assert info.batch_key(a.normalized()) == ("studio", None, 1024, 1024)


def test_engine_info_round_trips_as_json_and_pickle():
    info = describe_engine(FakeEngine())
    assert EngineInfo.from_json(info.to_json()) == info
    assert pickle.loads(pickle.dumps(info)) == info
