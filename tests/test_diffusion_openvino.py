"""The OpenVINO backend of the diffusion engine on the tiny random pipelines: outputs against
fp32 torch, the IR cache, backend choice, int8 weights and the SDXL code path.

Behaviour shared with torch (batched == single, seeds, cancellation, img2img, inpaint, previews)
runs on both backends through the parametrised ``engine`` fixture of test_diffusion.py.

Tolerances (uint8 grey levels against fp32 torch, same seeds): fp32 OpenVINO at most 2 (mean
below 0.2); bf16 OpenVINO mean below 2 and at most 32; int8 weights mean below 4; full int8
(quantize int8: weights and activations) mean below 2 and at most 24.
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


def test_backend_choice_and_its_reason(tiny_sd_dir, tmp_path, monkeypatch):
    # auto, where both backends can run the model: decided by the start-up probe
    auto = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), openvino_dir=tmp_path))
    assert auto.backend_pending and "not probed yet" in auto.backend_reason
    info = auto.describe()
    assert info["backend"] == "auto (probe at first load)" and "first load" in info["backend_reason"]
    with pytest.raises(EngineConfigError, match="quantize int8 is an option of the OpenVINO"):
        DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), backend="torch", quantize="int8"))
    with pytest.raises(EngineConfigError, match="alternatives"):
        DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), int8=True, quantize="int8"))
    q8 = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), quantize="int8"))
    assert q8.backend == "openvino" and "quantize int8" in q8.backend_reason
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
    # a key of its own (steps are part of it): this test sees the probe undecided, then decided
    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__DEFAULT_STEPS", "4")
    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__PROBE_S", "0")
    assert main(["engines", "--json"]) == 0
    d = {r["engine"]: r for r in json.loads(capsys.readouterr().out)}["diffusion"]
    assert d["backend"] == "auto (probe at first load)" and d["backend_reason"].startswith("auto:")
    assert "auto probe" in d["version"]  # listing engines does not load models
    assert isinstance(d["openvino_cached"], list)  # what a start would not have to convert
    assert main(["engines", "--json", "--probe"]) == 0
    d = {r["engine"]: r for r in json.loads(capsys.readouterr().out)}["diffusion"]
    assert d["backend"] in ("torch", "openvino") and d["backend_reason"].startswith("auto: probe")
    assert set(d["probe"]["measured"]) == {"torch", "openvino"}
    assert main(["engines"]) == 0  # the decision is cached: said without probing again
    out = capsys.readouterr().out
    assert f"backend: {d['backend']}" in out and "probe cached from" in out
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
def test_tiny_sdxl_runs_on_openvino(tiny_sdxl_dir):
    folder = tiny_sdxl_dir
    ref = DiffusionEngine(DiffusionSettings(model=str(folder), dtype="fp32", backend="torch"))
    eng = ov(folder, dtype="fp32")
    specs = [spec(p, seed=i) for i, p in enumerate(PROMPTS[:2])]
    got, want = stack(eng.run(specs)), stack(ref.run(specs))
    assert set(eng.load_report["converted"]) >= {"unet", "text_encoder", "text_encoder_2"}
    assert np.abs(got - want).max() <= 2
    assert np.abs(stack(eng.run(specs[1:]))[0] - got[1]).max() <= 1


def test_auto_probe_measures_both_backends_caches_the_decision_and_reuses_it(tiny_sd_dir,
                                                                             monkeypatch):
    from swiftshot.engines import backend_probe

    # default_steps 2 is this test's own probe key (the IR cache stays the session's)
    settings = DiffusionSettings(model=str(tiny_sd_dir), dtype="fp32", default_steps=2, probe_s=0)
    eng = DiffusionEngine(settings)
    assert eng.backend_pending
    # what a front process asks of the engine (the process executor's describe_engine): the
    # version is known without probing, so the front loads nothing and the worker's first load
    # (below) runs the probe once and keeps the winner
    from swiftshot.runtime.executor import describe_engine

    front = describe_engine(DiffusionEngine(settings))
    key, _ = backend_probe.probe_key(eng.model_id, eng._probe_work())
    assert eng.backend_pending and not backend_probe.decision_path(eng.openvino_dir, key).exists()
    assert "auto-" in front.version and eng._pipe is None
    eng.load()
    assert not eng.backend_pending
    assert eng.version == front.version  # the front's cache keys name what the worker renders
    probe = eng.probe
    measured = probe["measured"]
    assert set(measured) == {"torch", "openvino"} and probe["skipped"] == {}
    assert probe["choice"] == min(measured, key=lambda b: measured[b]["render_cpu_s"])
    assert eng.backend == probe["choice"] and all(m["render_cpu_s"] > 0 for m in measured.values())
    for b, m in measured.items():  # the reason gives the figures measured
        assert f"{b} {m['render_s']} s / {m['render_cpu_s']} CPU-s" in eng.backend_reason
    # the winner's loaded pipeline is the engine's (no second load)
    assert eng._pipe is not None and eng.load_report["probe_s"] > 0
    want = "OVUNet" if eng.backend == "openvino" else "UNet2DConditionModel"
    assert type(eng._pipe.unet).__name__ == want
    (decision,) = (eng.openvino_dir / "probe").glob(f"{probe['key']}.json")
    assert decision.is_file()
    eng.run([spec()])
    # a later start reads the decision: no probe
    again = DiffusionEngine(settings)
    assert not again.backend_pending and again.backend == eng.backend
    assert "cached from" in again.backend_reason and again.version == eng.version
    # keyed by the work and the machine / versions: another of either is probed anew
    assert DiffusionEngine(settings.model_copy(update={"dtype": "bf16"})).backend_pending
    real = backend_probe.versions
    monkeypatch.setattr(backend_probe, "versions", lambda: {**real(), "openvino": "0.0"})
    assert DiffusionEngine(settings).backend_pending


def test_auto_probe_skips_a_failing_backend_with_the_reason(tiny_sd_dir, monkeypatch):
    from swiftshot.engines import ov_backend

    def broken(*a, **kw):
        raise RuntimeError("no CPU plugin for this model")

    monkeypatch.setattr(ov_backend, "compile_ir", broken)
    eng = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), dtype="fp32", default_steps=3,
                                            probe_s=0))
    eng.load()
    assert eng.backend == "torch" and set(eng.probe["measured"]) == {"torch"}
    assert "no CPU plugin" in eng.probe["skipped"]["openvino"]
    assert "openvino skipped (RuntimeError: no CPU plugin" in eng.backend_reason
    assert eng.describe()["probe"]["skipped"]["openvino"].startswith("RuntimeError")
    assert len(eng.run([spec()])) == 1


def test_quantize_int8_calibrates_once_and_stays_within_tolerance(tiny_sd_dir, torch_fp32):
    pytest.importorskip("nncf")
    import openvino

    specs = [spec(p, seed=i) for i, p in enumerate(PROMPTS)]
    ref = stack(torch_fp32.run(specs))
    eng = ov(tiny_sd_dir, dtype="fp32", quantize="int8", quantize_samples=4)
    got = stack(eng.run(specs))
    assert eng.version.endswith(".q8c4")
    report = eng.load_report
    xml = eng.openvino_dir / f"unet_int8-{eng._ov_components()['unet_int8']}" / "model.xml"
    ops = {op.get_type_name() for op in openvino.Core().read_model(str(xml)).get_ops()}
    assert "FakeQuantize" in ops  # activations quantised, not only weights
    if "unet_int8" in report["converted"]:
        assert report["calibrate_s"] > 0 and report["unet_int8_quantize_s"] > 0
    # tolerance of full int8 against fp32 torch: mean below 2 grey levels, at most 24
    diff = np.abs(got - ref)
    assert 0 < diff.mean() < 2 and diff.max() <= 24
    assert np.abs(stack(eng.run(specs[1:2]))[0] - got[1]).max() <= 1  # batched == single
    again = ov(tiny_sd_dir, dtype="fp32", quantize="int8", quantize_samples=4)
    again.load()
    assert "unet_int8" in again.load_report["from_cache"] and "calibrate_s" not in again.load_report


def test_compiled_blobs_kept_apart_per_precision(tmp_path, monkeypatch):
    """bf16 and f32 compiles of one IR use separate OpenVINO cache folders: on an AMX Xeon,
    a bf16 compile into the folder holding the f32 blob crashed the process at inference
    (tests/test_diffusion.py::test_fp32_decoders_under_a_bf16_pipeline segfaulted)."""
    import swiftshot.engines.ov_backend as ob

    seen: list[dict] = []

    class Core:
        def compile_model(self, xml, device, props):
            seen.append(props)
            return object()

    monkeypatch.setattr(ob, "core", lambda: Core())
    for precision in ("f32", "bf16"):
        ob.compile_ir(tmp_path / "unet" / "model.xml", precision, tmp_path / "compiled")
    dirs = [p["CACHE_DIR"] for p in seen]
    assert len(set(dirs)) == 2, dirs
    assert all(d.startswith(str(tmp_path / "compiled")) for d in dirs)
    assert [p["INFERENCE_PRECISION_HINT"] for p in seen] == ["f32", "bf16"]
