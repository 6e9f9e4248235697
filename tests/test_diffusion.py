"""The diffusion engine, driven through the same from_pretrained path users take, on a tiny
random Stable Diffusion pipeline built offline (testing/tiny_pipeline.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")

from swiftshot.config import DiffusionSettings, Settings  # noqa: E402
from swiftshot.engines import Cancelled, EngineConfigError, create_engine  # noqa: E402
from swiftshot.engines.base import Engine  # noqa: E402
from swiftshot.engines.diffusion import DiffusionEngine  # noqa: E402
from swiftshot.spec import RenderSpec  # noqa: E402

pytestmark = pytest.mark.diffusion

PROMPTS = ["white ceramic mug on marble", "red leather handbag", "sneaker on concrete",
           "perfume bottle, soft light"]


def spec(prompt: str = PROMPTS[0], seed: int = 1, size: int = 64, **kw) -> RenderSpec:
    return RenderSpec(prompt=prompt, width=size, height=size, seed=seed, engine="diffusion",
                      **kw).normalized()


def arr(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


def DS(**kw) -> DiffusionSettings:
    """Settings of the torch backend unless a test says otherwise (the OpenVINO backend has
    its own file, and the behaviour tests below run on both through ``engine``)."""
    return DiffusionSettings(**{"backend": "torch", **kw})


@pytest.fixture(scope="module", params=["torch", "openvino"])
def engine(request, tiny_sd_dir) -> DiffusionEngine:
    if request.param == "openvino":
        pytest.importorskip("openvino")
    eng = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32", backend=request.param))
    eng.load()
    return eng


def test_loads_through_the_user_path_and_renders_the_asked_size(engine):
    assert isinstance(engine, Engine)
    (im,) = engine.run([spec(size=64)])
    assert im.size == (64, 64) and im.mode == "RGB"
    (wide,) = engine.run([spec(size=64).model_copy(update={"width": 96})])
    assert wide.size == (96, 64)
    # random weights still give an image with structure, not a flat fill
    assert arr(im).std() > 1


def test_batched_equals_single(engine):
    specs = [spec(p, seed=10 + i) for i, p in enumerate(PROMPTS)]
    assert len({engine.batch_key(s) for s in specs}) == 1
    batched = engine.run(specs)
    singles = [engine.run([s])[0] for s in specs]
    for b, s in zip(batched, singles, strict=True):
        assert np.abs(arr(b) - arr(s)).max() <= 1
    # and the four images are not the same image
    assert len({arr(b).tobytes() for b in batched}) == 4


def test_seed_decides_the_pixels(engine):
    a1, a2 = engine.run([spec(seed=5)]), engine.run([spec(seed=5)])
    b = engine.run([spec(seed=6)])
    assert np.array_equal(arr(a1[0]), arr(a2[0]))
    assert np.abs(arr(a1[0]) - arr(b[0])).mean() > 1


def test_specs_of_different_batch_keys_are_refused(engine):
    with pytest.raises(ValueError, match="batch key"):
        engine.run([spec(size=64), spec(size=128)])
    other_steps = spec(steps=2)
    assert engine.batch_key(other_steps) != engine.batch_key(spec())


def on_step_wanting(previews: int, seen: list):
    def on_step(i, n, preview):
        seen.append((i, n, preview))

    on_step.previews = previews
    return on_step


def test_previews_only_at_the_cadence_asked_and_never_at_the_last_step(engine):
    seen: list = []
    engine.run([spec(steps=4), spec(PROMPTS[1], steps=4)], on_step=on_step_wanting(1, seen))
    assert [(i, n) for i, n, _ in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    with_preview = [i for i, _, p in seen if p is not None]
    assert with_preview == [2]  # preview_steps(4, 1)
    # one preview per spec of the batch, in order, and they differ (other prompts)
    (previews,) = [p for _, _, p in seen if p is not None]
    assert len(previews) == 2 and all(im.size == (32, 32) for im in previews)
    assert previews[0].tobytes() != previews[1].tobytes()
    seen.clear()
    engine.run([spec(steps=4)], on_step=on_step_wanting(3, seen))
    assert [i for i, _, p in seen if p is not None] == [1, 2, 3]
    # a consumer that asks for nothing (or says nothing) gets no preview at any step
    for cb in (on_step_wanting(0, seen), lambda i, n, p: seen.append((i, n, p))):
        seen.clear()
        engine.run([spec(steps=3)], on_step=cb)
        assert len(seen) == 3 and all(p is None for _, _, p in seen)


def test_a_one_step_render_decodes_once(tiny_sd_dir, tiny_taesd_dir):
    eng = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32",
                                            tiny_vae=str(tiny_taesd_dir)))
    eng.load()
    calls = []
    decode = eng._tiny.decode

    def counting(*a, **kw):
        calls.append(1)
        return decode(*a, **kw)

    eng._tiny.decode = counting
    seen: list = []
    eng.run([spec(steps=1)], on_step=on_step_wanting(3, seen))
    assert len(calls) == 1 and [p for _, _, p in seen] == [None]


def test_a_repeated_prompt_with_a_new_seed_skips_the_text_encoder(tiny_sd_dir):
    from swiftshot import telemetry

    eng = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32"))
    uncached = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32",
                                                 prompt_cache_bytes=0))
    eng.load()
    calls = []
    forward = eng._pipe.text_encoder.forward

    def counting(input_ids, *a, **kw):
        calls.append(input_ids.shape[0])
        return forward(input_ids, *a, **kw)

    eng._pipe.text_encoder.forward = counting
    hits0 = telemetry.PROMPT_EMBED_CACHE.labels("hit")._value.get()
    first = eng.run([spec(seed=1)])
    assert calls == [1]
    again = eng.run([spec(seed=2)])
    assert calls == [1]  # cached: the encoder did not run
    assert telemetry.PROMPT_EMBED_CACHE.labels("hit")._value.get() == hits0 + 1
    assert eng.prompt_cache.hits == 1 and eng.prompt_cache.misses == 1
    # a batch of a cached and a new prompt encodes only the new one
    mixed = eng.run([spec(seed=3), spec(PROMPTS[1], seed=3)])
    assert calls == [1, 1]
    # the cached embeddings give exactly the pixels the encoder would have
    for got, s in ((first[0], spec(seed=1)), (again[0], spec(seed=2)), (mixed[1], spec(PROMPTS[1], seed=3))):
        assert np.abs(arr(got) - arr(uncached.run([s])[0])).max() <= 1
    assert 0 < eng.prompt_cache.nbytes <= eng.settings.prompt_cache_bytes
    assert telemetry.PROMPT_EMBED_CACHE_BYTES._value.get() == eng.prompt_cache.nbytes


def test_prompt_cache_is_bounded_in_bytes_and_keyed_by_the_negative_prompt_under_guidance(
        tiny_sd_dir):
    import torch

    from swiftshot.engines.prompt_cache import PromptEmbeddingCache

    one = (torch.zeros(1, 77, 32), None)  # 9856 bytes
    cache = PromptEmbeddingCache(max_bytes=3 * 9856)
    encoded = []
    for k in "abcd":
        cache.get_or_encode([k], lambda idx: encoded.append(idx) or [one])
    assert len(cache) == 3 and cache.nbytes == 3 * 9856  # "a" evicted, least recently used
    cache.get_or_encode(["a", "d", "a"], lambda idx: encoded.append(idx) or [one])
    assert encoded[-1] == [0]  # "a" once, though asked twice; "d" was a hit
    eng = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32"))
    g = dict(guidance=3.0, steps=2)
    a = eng.run([spec(negative_prompt="blurry", **g)])[0]
    b = eng.run([spec(negative_prompt="text, watermark", **g)])[0]
    assert eng.prompt_cache.misses == 2 and np.abs(arr(a) - arr(b)).mean() > 0.5
    # without guidance the negative prompt is not encoded, so it does not split the cache
    eng.run([spec(negative_prompt="blurry")])
    eng.run([spec(negative_prompt="other")])
    assert eng.prompt_cache.misses == 3 and eng.prompt_cache.hits == 1


def test_on_step_false_cancels_before_the_remaining_steps(engine):
    calls = []

    def stop_after_two(i, n, preview):
        calls.append(i)
        return i < 2

    with pytest.raises(Cancelled):
        engine.run([spec(steps=4)], on_step=stop_after_two)
    assert calls == [1, 2]
    # the engine still works after a cancelled batch
    assert engine.run([spec()])[0].size == (64, 64)


def test_errors_say_what_is_wrong_and_what_is_expected(tmp_path, tiny_sd_dir):
    with pytest.raises(EngineConfigError, match="no model configured"):
        DiffusionEngine(DS())
    with pytest.raises(EngineConfigError, match="does not exist.*model_index.json"):
        DiffusionEngine(DS(model=str(tmp_path / "nope")))
    with pytest.raises(EngineConfigError, match="not a diffusers pipeline.*model_index.json"):
        DiffusionEngine(DS(model=str(tmp_path)))
    with pytest.raises(EngineConfigError, match="does not exist"):
        DiffusionEngine(DS(model="nobody/not-in-the-cache"))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_sd_dir, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    eng = DiffusionEngine(DS(model=str(broken), dtype="fp32"))
    with pytest.raises(EngineConfigError, match="could not load.*complete pipeline folder"):
        eng.load()
    with pytest.raises(EngineConfigError, match="tiny_vae.*AutoencoderTiny"):
        DiffusionEngine(DS(model=str(tiny_sd_dir), tiny_vae=str(tmp_path)))


def test_a_request_for_another_model_is_refused(engine):
    with pytest.raises(EngineConfigError, match="serves model"):
        engine.run([spec(model="some/other-model")])


def test_version_tracks_the_model_and_the_pixel_changing_switches(tiny_sd_dir, tiny_taesd_dir, tmp_path):
    base = DS(model=str(tiny_sd_dir), dtype="fp32")
    v = DiffusionEngine(base).version
    assert DiffusionEngine(base).version == v
    assert DiffusionEngine(base.model_copy(update={"dtype": "bf16"})).version != v
    assert DiffusionEngine(base.model_copy(update={"int8": True})).version != v
    with_tiny = base.model_copy(update={"tiny_vae": str(tiny_taesd_dir)})
    assert DiffusionEngine(with_tiny).version != v
    # tiny VAE for previews only does not change final pixels, so not the version either
    assert DiffusionEngine(with_tiny.model_copy(update={"tiny_vae_final": False})).version == v
    # the same configs with other weights are another model
    from swiftshot.testing.tiny_pipeline import build_tiny_sd

    other = build_tiny_sd(tmp_path / "other", seed=1)
    assert DiffusionEngine(base.model_copy(update={"model": str(other)})).version != v
    # a copy of the same folder elsewhere is the same model (the fingerprint is content)
    copy = shutil.copytree(tiny_sd_dir, tmp_path / "copy")
    assert DiffusionEngine(base.model_copy(update={"model": str(copy)})).version == v


def test_create_engine_and_describe(tiny_sd_dir):
    eng = create_engine("diffusion", Settings(), model=str(tiny_sd_dir))
    info = eng.describe()
    assert info["pipeline"] == "StableDiffusionPipeline"
    assert info["device"] == "cpu" and info["int8"] is False
    # auto dtype picks bf16 on a CPU with native bf16, fp32 otherwise
    from swiftshot.engines.diffusion import cpu_has_bf16

    assert info["dtype"] == ("bf16" if cpu_has_bf16() else "fp32")
    assert info["dtype"] in eng.version


def test_tiny_vae_decodes_finals_and_previews(tiny_sd_dir, tiny_taesd_dir, engine):
    eng = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32", backend=engine.settings.backend,
                                            tiny_vae=str(tiny_taesd_dir)))
    seen: list = []
    (im,) = eng.run([spec()], on_step=on_step_wanting(1, seen))
    (full,) = engine.run([spec()])
    assert im.size == full.size == (64, 64)
    assert np.abs(arr(im) - arr(full)).mean() > 1  # another decoder, other pixels
    eng.run([spec(steps=2)], on_step=on_step_wanting(1, seen))
    previews = [p for _, _, p in seen if p is not None]
    assert len(previews) == 1 and previews[0][0].size == (64, 64)  # the tiny VAE upsamples
    # previews only: finals keep the full VAE
    eng2 = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32", backend=engine.settings.backend,
                                             tiny_vae=str(tiny_taesd_dir), tiny_vae_final=False))
    assert np.array_equal(arr(eng2.run([spec()])[0]), arr(full))


def test_tiny_vae_of_the_wrong_family_is_refused(tiny_sd_dir, tmp_path):
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                    num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1)).save_pretrained(tmp_path)
    eng = DiffusionEngine(DS(model=str(tiny_sd_dir), tiny_vae=str(tmp_path)))
    with pytest.raises(EngineConfigError, match="upscales ×4.*needs ×2"):
        eng.load()


def test_bf16_and_int8_stay_close_to_fp32(tiny_sd_dir, engine):
    if engine.backend != "torch":
        pytest.skip("torch's bf16 and torchao int8 (the OpenVINO ones: test_diffusion_openvino)")
    ref = arr(engine.run([spec()])[0])
    bf16 = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="bf16"))
    int8 = DiffusionEngine(DS(model=str(tiny_sd_dir), dtype="fp32", int8=True))
    out_bf16, out_int8 = arr(bf16.run([spec()])[0]), arr(int8.run([spec()])[0])
    # int8 really replaced the denoiser's linear weights
    from torchao.quantization import Int8Tensor

    linears = [m for m in int8._pipe.unet.modules() if type(m).__name__ == "Linear"]
    assert linears and all(isinstance(m.weight, Int8Tensor) for m in linears)
    for out in (out_bf16, out_int8):
        assert not np.array_equal(out, ref)
        assert np.abs(out - ref).mean() < 12  # a few grey levels, not another image


def test_inpaint_keeps_the_unmasked_pixels_exactly(engine):
    rng = np.random.default_rng(0)
    product = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[:, 32:] = 255  # repaint the right half, keep the left
    m = Image.fromarray(mask, "L")
    specs = [spec(seed=1), spec(PROMPTS[1], seed=2)]
    out = engine.run_inpaint(specs, [product, product], [m, m])
    src = arr(product)
    for im in out:
        assert np.array_equal(arr(im)[:, :32], src[:, :32])
        assert np.abs(arr(im)[:, 32:] - src[:, 32:]).mean() > 5
    # batched equals single here too
    (single,) = engine.run_inpaint(specs[1:], [product], [m])
    assert np.abs(arr(single) - arr(out[1])).max() <= 1


def test_img2img_batched_equals_single_and_follows_the_init_image(engine):
    rng = np.random.default_rng(1)
    inits = [Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2)]
    specs = [spec(steps=2, seed=3), spec(PROMPTS[2], steps=2, seed=3)]
    both = engine.run_img2img(specs, inits, strength=0.5)
    one = engine.run_img2img(specs[1:], inits[1:], strength=0.5)
    assert np.abs(arr(both[1]) - arr(one[0])).max() <= 1
    other_init = engine.run_img2img(specs[1:], inits[:1], strength=0.5)
    assert np.abs(arr(other_init[0]) - arr(one[0])).mean() > 1
    with pytest.raises(ValueError, match="one image per spec"):
        engine.run_img2img(specs, inits[:1])
    with pytest.raises(ValueError, match="strength"):
        engine.run_img2img(specs, inits, strength=0)


def test_tiny_pipeline_tokenizer_is_real_bpe(tiny_sd_dir):
    vocab = json.loads((tiny_sd_dir / "tokenizer" / "vocab.json").read_text())
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_sd_dir / "tokenizer"))
    ids = tok("a photo of a mug").input_ids
    assert ids[0] == vocab["<|startoftext|>"] and ids[-1] == vocab["<|endoftext|>"]
    assert "photo</w>" in vocab and vocab["photo</w>"] in ids  # a learned merge is used


@pytest.mark.slow
def test_real_size_architectures_have_the_published_parameter_counts():
    # Built on the meta device: shapes only, no memory, no download.
    from swiftshot.engines.architectures import build_architecture, parameter_counts

    sd = parameter_counts(build_architecture("sd-turbo", device="meta"))
    assert sd == {"text_encoder": 340_387_840, "unet": 865_910_724, "vae": 83_653_863}
    xl = parameter_counts(build_architecture("sdxl-turbo", device="meta"))
    assert xl["unet"] == 2_567_463_684 and xl["text_encoder_2"] == 694_659_840
    assert xl["text_encoder"] == 123_060_480
    with pytest.raises(ValueError, match="known: sd-turbo, sdxl-turbo"):
        build_architecture("flux", device="meta")


def test_from_pipeline_applies_the_same_switches(tiny_sd_dir, engine):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), local_files_only=True)
    settings = DS(dtype="fp32", backend=engine.settings.backend)
    if engine.backend == "torch":  # (an OpenVINO one under a new identity converts anew)
        other = DiffusionEngine.from_pipeline(
            StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), local_files_only=True),
            settings, identity="tiny-x")
        assert other.version.startswith("1.tiny-x.fp32")
    # the folder's fingerprint as identity: the same version, and (OpenVINO) the same IR
    eng = DiffusionEngine.from_pipeline(pipe, settings, identity=engine.model_id)
    assert eng.version == engine.version
    # same weights, same switches: the same pixels as the engine loaded from the folder
    assert np.array_equal(arr(eng.run([spec()])[0]), arr(engine.run([spec()])[0]))


def test_tiny_sdxl_pipeline_runs_batched_equals_single(tiny_sdxl_dir):
    eng = DiffusionEngine(DS(model=str(tiny_sdxl_dir), dtype="fp32"))
    assert eng.describe()["pipeline"] == "StableDiffusionXLPipeline"
    specs = [spec(p, seed=i) for i, p in enumerate(PROMPTS[:2])]
    both = eng.run(specs)
    assert np.abs(arr(both[1]) - arr(eng.run(specs[1:])[0])).max() <= 1


def test_fp32_decoders_under_a_bf16_pipeline(tiny_sd_dir, tiny_taesd_dir, engine):
    settings = DS(model=str(tiny_sd_dir), dtype="bf16", vae_dtype="fp32",
                  backend=engine.settings.backend)
    eng = DiffusionEngine(settings)
    assert eng.vae_dtype == "fp32" and "vae-fp32" in eng.version
    same = DiffusionEngine(settings.model_copy(update={"vae_dtype": "same"}))
    assert same.vae_dtype == "bf16" and same.version != eng.version
    # auto keeps the pipeline's dtype (fp32 decoders were not faster on the CPU measured)
    auto = DiffusionEngine(settings.model_copy(update={"vae_dtype": "auto"}))
    assert auto.vae_dtype == "bf16" and auto.version == same.version
    ref = arr(engine.run([spec()])[0])
    specs = [spec(seed=1), spec(PROMPTS[1], seed=2)]
    both = eng.run(specs)
    assert np.abs(arr(both[0]) - ref).mean() < 12
    assert np.abs(arr(eng.run(specs[1:])[0]) - arr(both[1])).max() <= 1
    # encode paths (img2img with the full VAE, inpaint with the tiny one) cast back to bf16
    init = Image.fromarray(np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="gives none: raise steps to 2"):
        eng.run_img2img(specs[:1], [init], strength=0.5)
    two = [spec(seed=1, steps=2)]
    assert eng.run_img2img(two, [init], strength=0.5)[0].size == (64, 64)
    tiny = DiffusionEngine(settings.model_copy(update={"tiny_vae": str(tiny_taesd_dir)}))
    mask = Image.new("L", (64, 64), 255)
    assert tiny.run_inpaint(specs[:1], [init], [mask])[0].size == (64, 64)
