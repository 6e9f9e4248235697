"""The ops registry validates requests; run_batch runs engine → ops → preset in order."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swiftshot import pipeline
from swiftshot.engines import FakeEngine
from swiftshot.ops import ComposeOp, OpsError, needs_engine, parse_colour, validate_ops
from swiftshot.spec import RenderSpec
from swiftshot.testing.products import make_photo

SHA = "a" * 64
BG_SHA = "b" * 64


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return make_photo("box_gradient", (480, 480)).image


def spec(**kw) -> RenderSpec:
    return RenderSpec(**{"prompt": "white paper sweep", "size": "512x512", **kw}).normalized()


@pytest.mark.parametrize("ops, words", [
    ([{"op": "blur"}], "ops[0]: unknown op 'blur'; known ops: cutout, compose"),
    ([{"op": "compose", "fill": 2}], "ops[0] (compose): fill: Input should be less than or equal to 1"),
    ([{"op": "compose", "color": "#zzzzzz", "backdrop": "color"}], "colour must be"),
    ([{"op": "cutout", "mode": "fast"}], "ops[0] (cutout): mode: Extra inputs are not permitted"),
    ([{"op": "compose"}, {"op": "cutout"}], "ops[1]: cutout must come before compose"),
    ([{"op": "enhance", "upscale": 9}], "upscale: Input should be less than or equal to 4"),
])
def test_bad_ops_are_refused_with_index_field_and_rule(ops, words):
    with pytest.raises(OpsError) as ei:
        validate_ops(ops)
    assert words in str(ei.value)
    assert ei.value.status == 422


def test_colours_and_defaults():
    assert parse_colour("#fff") == (255, 255, 255)
    assert parse_colour("white") == (255, 255, 255)
    assert parse_colour([1, 2, 3]) == (1, 2, 3)
    assert parse_colour("10, 20, 30") == (10, 20, 30)
    op = validate_ops([{"op": "compose", "backdrop": "color", "color": "#102030"}])[0]
    assert isinstance(op, ComposeOp) and op.color == (16, 32, 48)


def test_needs_engine():
    assert needs_engine([], has_product=False)
    assert not needs_engine(validate_ops([{"op": "cutout"}]), has_product=True)
    assert needs_engine(validate_ops([{"op": "cutout"}, {"op": "compose"}]), has_product=True)
    assert not needs_engine(validate_ops([{"op": "compose", "backdrop": "color"}]), True)


def test_engine_runs_only_for_specs_that_need_a_backdrop(photo):
    engine = FakeEngine()
    specs = [spec(product_sha256=SHA, ops=[{"op": "cutout"}]),
             spec(product_sha256=SHA, ops=[{"op": "cutout"}, {"op": "compose", "fill": 0.6}]),
             spec(prompt="oak table")]
    out = pipeline.run_batch(engine, specs, products={SHA: photo})
    assert len(engine.calls) == 1 and len(engine.calls[0]) == 2
    backdrop_spec = engine.calls[0][0]
    assert backdrop_spec.product_sha256 is None and backdrop_spec.ops == ()
    assert out[0].mode == "RGBA" and out[0].size == photo.size
    assert out[1].mode == "RGB" and out[1].size == (512, 512)
    # The fake engine paints one flat colour: the composite's corner is that colour.
    flat = FakeEngine().run([backdrop_spec])[0]
    assert out[1].getpixel((3, 3)) == flat.getpixel((3, 3))
    assert out[2].size == (512, 512)


def test_no_engine_call_when_nothing_needs_it(photo):
    engine = FakeEngine()
    out = pipeline.run_batch(engine, [spec(product_sha256=SHA, preset="amazon")],
                             products={SHA: photo})
    assert engine.calls == []
    arr = np.asarray(out[0])
    assert out[0].size == (2000, 2000) and (arr[:5] == 255).all()


def test_compose_on_uploaded_backdrop_and_colour(photo):
    backdrop = Image.new("RGB", (300, 300), (20, 160, 20))
    out = pipeline.run_batch(FakeEngine(), [
        spec(product_sha256=SHA, ops=[{"op": "compose", "backdrop": "image", "image_sha256": BG_SHA}]),
        spec(product_sha256=SHA, ops=[{"op": "compose", "backdrop": "color", "color": "#000080",
                                       "shadow": False}]),
    ], products={SHA: photo, BG_SHA: backdrop})
    assert out[0].getpixel((2, 2)) == (20, 160, 20)
    assert out[1].getpixel((2, 2)) == (0, 0, 128)


def test_missing_product_and_unknown_preset_are_user_errors(photo):
    with pytest.raises(OpsError, match="was not given"):
        pipeline.run_batch(FakeEngine(), [spec(product_sha256=SHA)], products={})
    with pytest.raises(ValueError, match="unknown preset"):
        pipeline.run_batch(FakeEngine(), [spec(product_sha256=SHA, preset="ebay")],
                           products={SHA: photo})
    with pytest.raises(OpsError, match="image_sha256"):
        pipeline.run_batch(FakeEngine(), [spec(product_sha256=SHA, ops=[
            {"op": "compose", "backdrop": "image"}])], products={SHA: photo})


def test_inpaint_backdrop_uses_the_engine_when_it_can(photo):
    class Inpainting(FakeEngine):
        def __init__(self):
            super().__init__()
            self.inpaints = []

        def run_inpaint(self, specs, images, masks):
            self.inpaints.append((specs, images, masks))
            return [Image.new("RGB", images[0].size, (1, 2, 3))]

    s = spec(product_sha256=SHA, ops=[{"op": "compose", "backdrop": "inpaint"}])
    eng = Inpainting()
    out = pipeline.run_batch(eng, [s], products={SHA: photo})
    assert out[0].getpixel((0, 0)) == (1, 2, 3)
    mask = np.asarray(eng.inpaints[0][2][0])
    assert mask[0, 0] == 255 and mask[256, 256] == 0  # repaint around, keep the product
    with pytest.raises(OpsError, match="run_inpaint"):
        pipeline.run_batch(FakeEngine(), [s], products={SHA: photo})


def test_product_less_spec_is_the_engine_image():
    s = spec()
    engine = FakeEngine()
    assert np.array_equal(np.asarray(pipeline.run_batch(engine, [s])[0]),
                          np.asarray(FakeEngine().run([s])[0]))


def test_source_type_and_ops_version_kept():
    assert pipeline.OPS_VERSION == "53"
    assert pipeline.source_type_for(spec(product_sha256=SHA)) == "compositeSynthetic"


def test_photo_without_a_product_is_a_clear_user_error():
    blank = Image.new("RGB", (300, 300), (240, 240, 240))
    with pytest.raises(OpsError, match=r"ops\[1\] \(compose\): the cutout is empty"):
        pipeline.run_batch(FakeEngine(), [spec(product_sha256=SHA, ops=[
            {"op": "cutout"}, {"op": "compose", "backdrop": "color"}])], products={SHA: blank})
