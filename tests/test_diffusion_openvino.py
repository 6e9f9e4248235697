"""The OpenVINO backend of the diffusion engine on the tiny random pipelines: outputs against
fp32 torch, the IR cache, backend choice, int8 weights and the SDXL code path.

Behaviour shared with torch (batched == single, seeds, cancellation, img2img, inpaint, previews)
runs on both backends through the parametrised ``engine`` fixture of test_diffusion.py.

Tolerances (uint8 grey levels against fp32 torch, same seeds): fp32 OpenVINO at most 2 (mean
below 0.2); bf16 OpenVINO mean below 2 and at most 32; int8 weights mean below 4.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("openvino")

from swiftshot.config import DiffusionSettings, Settings  # noqa: E402
from swiftshot.engines import EngineConfigError  # noqa: E402
from swiftshot.engines.diffusion import DiffusionEngine, cpu_has_bf16  # noqa: E402
from swiftshot.spec import RenderSpec  # noqa: E402

pytestmark = pytest.mark.diffusion

PROMPTS = ["white ceramic mug on marble", "red leather handbag", "sneaker on concrete"]


def spec(prompt: str = PROMPTS[0], seed: int = 1, size: int = 64, **kw) -> RenderSpec:
    return RenderSpec(prompt=prompt, width=size, height=size, seed=seed, engine="diffusion",
                      **kw).normalized()


def stack(images) -> np.ndarray:
    return np.stack([np.asarray(im, dtype=np.int16) for im in images])


@pytest.fixture(scope="module")
def torch_fp32(tiny_sd_dir) -> DiffusionEngine:
    return DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), dtype="fp32", backend="torch"))


def ov(model, **kw) -> DiffusionEngine:
    return DiffusionEngine(DiffusionSettings(model=str(model), backend="openvino", **kw))


def test_outputs_within_tolerance_of_fp32_torch_and_batched_equals_single(tiny_sd_dir, torch_fp32):
    specs = [spec(p, seed=i) for i, p in enumerate(PROMPTS)]
    ref = stack(torch_fp32.run(specs))
    fp32 = ov(tiny_sd_dir, dtype="fp32")
    got = stack(fp32.run(specs))
    assert np.abs(got - ref).max() <= 2 and np.abs(got - ref).mean() < 0.2
    bf16 = ov(tiny_sd_dir, dtype="bf16")
    assert bf16.load_report == {} and not bf16.describe()["loaded"]
    half = stack(bf16.run(specs))
    assert bf16.load_report["precision"] == ("bf16" if cpu_has_bf16() else "f32")
    assert np.abs(half - ref).mean() < 2 and np.abs(half - ref).max() <= 32
    if cpu_has_bf16():  # the hint really changed the arithmetic
        assert not np.array_equal(half, got)
    for eng, batched in ((fp32, got), (bf16, half)):
        single = stack(eng.run(specs[1:2]))[0]
        assert np.abs(single - batched[1]).max() <= 1
    # the backend is part of the version (so of every cache key): other pixels, other key
    assert fp32.version != torch_fp32.version and ".ov" in fp32.version


def test_converted_once_then_loaded_from_the_cache_keyed_by_weights_and_settings(
        tiny_sd_dir, tmp_path):
    import shutil

    first = ov(tiny_sd_dir, dtype="fp32")
    first.load()  # converts, or finds what an earlier test converted in this session's folder
    again = ov(tiny_sd_dir, dtype="bf16")
    again.load()
    report = again.load_report
    assert report["converted"] == []
    assert set(report["from_cache"]) == {"unet", "text_encoder", "vae_decoder"}
    # a warm start does not load the converted components' torch weights at all
    assert type(again._pipe.unet).__name__ == "OVUNet"
    assert type(again._pipe.text_encoder).__name__ == "OVTextEncoder"
    assert again.describe()["backend"] == "openvino"
    assert (again.openvino_dir / "compiled").is_dir()  # OpenVINO's compiled-blob cache
    # keys: the weights' fingerprint and the conversion settings, not the folder's path
    keys = first._ov_components()
    assert ov(tiny_sd_dir, dtype="fp32", int8=True)._ov_components()["unet"] != keys["unet"]
    assert ov(tiny_sd_dir, dtype="bf16")._ov_components() == keys  # bf16 is a compile hint
    copy = shutil.copytree(tiny_sd_dir, tmp_path / "copy")
    assert ov(copy, dtype="fp32")._ov_components() == keys
    from swiftshot.testing.tiny_pipeline import build_tiny_sd

    other = build_tiny_sd(tmp_path / "other", seed=3)
    assert ov(other, dtype="fp32")._ov_components()["unet"] != keys["unet"]


def test_prompt_cache_skips_the_openvino_text_encoder(tiny_sd_dir):
    eng = ov(tiny_sd_dir, dtype="fp32")
    eng.load()
    runner = eng._pipe.text_encoder.runner
    eng.run([spec(seed=1)])
    calls = runner.calls
    eng.run([spec(seed=2)])
    assert runner.calls == calls and eng.prompt_cache.hits >= 1


def test_backend_choice_and_its_reason(tiny_sd_dir, monkeypatch):
    auto = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir)))
    assert auto.backend == "openvino" and "auto" in auto.backend_reason
    info = auto.describe()
    assert info["backend"] == "openvino" and "measured" in info["backend_reason"]
    compiled = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), compile=True))
    assert compiled.backend == "torch" and "compile" in compiled.backend_reason
    with pytest.raises(EngineConfigError, match="compile is an option of the torch backend"):
        ov(tiny_sd_dir, compile=True)
    forced = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), backend="torch"))
    assert forced.backend == "torch" and "configured" in forced.backend_reason
    # Settings put the IR cache under the data directory
    monkeypatch.delenv("SWIFTSHOT_ENGINE__DIFFUSION__OPENVINO_DIR")
    s = Settings(data_dir="/srv/swiftshot")
    assert str(s.engine.diffusion.openvino_dir) == "/srv/swiftshot/openvino"


def test_engines_command_says_which_backend_and_why(tiny_sd_dir, monkeypatch, capsys):
    import json

    from swiftshot.cli import main

    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__MODEL", str(tiny_sd_dir))
    assert main(["engines", "--json"]) == 0
    d = {r["engine"]: r for r in json.loads(capsys.readouterr().out)}["diffusion"]
    assert d["backend"] == "openvino" and d["backend_reason"].startswith("auto:")
    assert isinstance(d["openvino_cached"], list)  # what a start would not have to convert
    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__BACKEND", "torch")
    assert main(["engines"]) == 0
    out = capsys.readouterr().out
    assert "backend: torch" in out and "backend_reason: backend = torch (configured)" in out


@pytest.mark.slow
def test_int8_weights_stay_close_to_fp32(tiny_sd_dir, torch_fp32):
    pytest.importorskip("nncf")
    specs = [spec(seed=4)]
    eng = ov(tiny_sd_dir, dtype="fp32", int8=True)
    got = stack(eng.run(specs))
    ref = stack(torch_fp32.run(specs))
    assert eng.version.endswith(".int8") and "unet" in eng.load_report["converted"] + \
        eng.load_report["from_cache"]
    ir = eng.openvino_dir / f"unet-{eng._ov_components()['unet']}" / "model.bin"
    plain = eng.openvino_dir / f"unet-{ov(tiny_sd_dir, dtype='fp32')._ov_components()['unet']}" / "model.bin"
    if plain.exists():  # 8-bit weights are smaller than the fp16 ones
        assert ir.stat().st_size < plain.stat().st_size
    assert 0 < np.abs(got - ref).mean() < 4


@pytest.mark.slow
def test_tiny_sdxl_runs_on_openvino(tmp_path):
    from swiftshot.testing.tiny_pipeline import build_tiny_sdxl

    folder = build_tiny_sdxl(tmp_path / "xl")
    ref = DiffusionEngine(DiffusionSettings(model=str(folder), dtype="fp32", backend="torch"))
    eng = ov(folder, dtype="fp32")
    specs = [spec(p, seed=i) for i, p in enumerate(PROMPTS[:2])]
    got, want = stack(eng.run(specs)), stack(ref.run(specs))
    assert set(eng.load_report["converted"]) >= {"unet", "text_encoder", "text_encoder_2"}
    assert np.abs(got - want).max() <= 2
    assert np.abs(stack(eng.run(specs[1:]))[0] - got[1]).max() <= 1
