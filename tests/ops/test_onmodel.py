"""On-model shots: the garment put on a synthetic model photo, scored against exact masks
(testing/people.py); the op wired into specs; the ghost mannequin's inside photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from swiftshot.ops import OpContext, OpsError, run_ops, validate_ops
from swiftshot.ops.onmodel import NoPerson, PersonSegmenter, dress, find_body, find_garment
from swiftshot.testing.people import make_garment, make_model, score

# Seeds whose model has short hair (long hair over the shoulders is a known weak spot,
# held to its own, lower figures below).
SHORT_HAIR = (0, 1, 3, 4)


@pytest.fixture(scope="module")
def dressed():
    out = {}
    for seed in (*SHORT_HAIR, 2):
        model, garment = make_model(seed), make_garment(seed)
        out[seed] = (model, garment, dress(model.image, garment.image))
    return out


def test_body_keypoints_match_the_drawn_body():
    model = make_model(1)
    b = find_body(model.person >= 0.5)
    (lx, sy), (rx, _) = model.shoulders
    unit = model.params["unit"]
    assert abs(b.cx - model.neck_base[0]) < 0.1 * unit
    assert abs(b.neck_base - model.neck_base[1]) < 0.25 * unit
    assert abs(b.shoulder_l - lx) < 0.25 * unit and abs(b.shoulder_r - rx) < 0.25 * unit
    assert abs(b.shoulder_y - sy) < 0.4 * unit


def test_garment_keypoints_match_the_drawn_garment():
    g = make_garment(1)
    gp = find_garment(g.mask)
    bw = g.keypoints["shoulder_r"][0] - g.keypoints["shoulder_l"][0]
    for name in ("shoulder_l", "shoulder_r", "hem_l", "hem_r"):
        assert np.hypot(*np.subtract(gp.pts[name], g.keypoints[name])) < 0.06 * bw, name
    assert abs(gp.pts["dip"][1] - g.keypoints["neck_dip"][1]) < 0.06 * bw
    assert gp.sleeves == (g.kind != "tank")


@pytest.mark.parametrize("seed", SHORT_HAIR)
def test_dressed_scores(dressed, seed):
    model, _, res = dressed[seed]
    s = score(res.garment_alpha, model, res.neckline_y)
    # measured on these seeds: inside 0.985-0.996, coverage 0.974-0.988, neckline
    # 0.059-0.076, neck/hands 1.0
    assert s["inside"] >= 0.97, s
    assert s["coverage"] >= 0.95, s
    assert s["neckline"] <= 0.1, s
    assert s["neck"] >= 0.95 and s["hands"] >= 0.95, s


def test_long_hair_stays_in_front(dressed):
    model, _, res = dressed[2]
    s = score(res.garment_alpha, model, res.neckline_y)
    assert s["hair"] >= 0.9 and s["inside"] >= 0.97  # hair in front, nothing on the backdrop
    assert s["neck"] >= 0.9


def test_result_is_the_model_photo_dressed(dressed):
    model, garment, res = dressed[1]
    out = np.asarray(res.image).astype(int)
    src = np.asarray(model.image).astype(int)
    assert res.image.size == model.image.size
    away = res.garment_alpha < 1 / 512
    assert np.abs(out[away] - src[away]).max() == 0          # only the garment's pixels change
    torso = model.torso & (res.garment_alpha > 0.99)
    # the torso now shows the garment's colour (lit by the model photo's light)
    got = np.median(out[torso], 0)
    assert np.abs(got - np.array(garment.colour)).sum() < 90, got


def test_score_catches_a_bad_placement(dressed):
    """The score can fail: the same garment alpha moved down and right scores badly."""
    model, _, res = dressed[1]
    moved = np.roll(np.roll(res.garment_alpha, 120, 0), 150, 1)
    s = score(moved, model, res.neckline_y + 120)
    assert s["inside"] < 0.95 and s["coverage"] < 0.8 and s["neckline"] > 0.1


def test_no_person_is_refused():
    blank = Image.new("RGB", (320, 400), (236, 236, 234))
    with pytest.raises(NoPerson, match="no person"):
        dress(blank, make_garment(1).image)
    box = Image.new("RGB", (320, 400), (236, 236, 234))
    box.paste((40, 60, 160), (100, 120, 220, 300))   # a product, not a person
    with pytest.raises(NoPerson, match="head and shoulders"):
        dress(box, make_garment(1).image)


def test_person_segmenter_uses_an_onnx_person_model_when_given(tmp_path):
    """A ``u2net_human_seg.onnx`` in the model folder is used (a tiny graph built here that
    answers a fixed mask); an empty folder falls back to classical."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    # output = ReduceMean over channels of the input (1×3×320×320 → 1×1×320×320)
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=1)
    graph = helper.make_graph([node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 320, 320])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 320, 320])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "u2net_human_seg.onnx")
    seg = PersonSegmenter("auto", tmp_path)
    assert seg.name == "onnx:u2net_human_seg"
    img = Image.new("RGB", (64, 80), (20, 20, 20))
    img.paste((250, 250, 250), (20, 10, 44, 70))
    mask = seg.mask(img)
    assert mask.shape == (80, 64) and mask[40, 32] > 0.9 and mask[5, 5] < 0.1
    assert PersonSegmenter("auto", tmp_path / "none").name == "classical"
    # a model that sees no one (all-zero mask) falls back to the classical segmenter
    zero = helper.make_node("Sub", ["y0", "y0"], ["y"])
    node0 = helper.make_node("ReduceMean", ["x"], ["y0"], axes=[1], keepdims=1)
    g0 = helper.make_graph([node0, zero], "g0",
                           [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 320, 320])],
                           [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 320, 320])])
    m0 = helper.make_model(g0, opset_imports=[helper.make_opsetid("", 13)])
    m0.ir_version = 8
    blind = tmp_path / "blind"
    blind.mkdir()
    onnx.save(m0, blind / "u2net_human_seg.onnx")
    person = make_model(1, (320, 400))
    got = PersonSegmenter("auto", blind).mask(person.image) >= 0.5
    truth = person.person >= 0.5
    upper = np.arange(400)[:, None] < person.hip_y  # what dressing a top needs (the classical
    got, truth = got & upper, truth & upper         # cutout loses grey trousers on grey paper)
    assert (got & truth).sum() / (got | truth).sum() > 0.85
    with pytest.raises(ValueError, match="auto or classical"):
        PersonSegmenter("u2net")


def test_onmodel_op_in_a_spec():
    model, garment = make_model(1, (320, 400)), make_garment(1, (320, 320))
    sha = "a" * 64
    ops = validate_ops([{"op": "onmodel", "model_sha256": sha}])
    ctx = OpContext(size=(320, 400), products={sha: model.image})
    out = run_ops(garment.image, ops, ctx)
    assert out.size == model.image.size and out.mode == "RGB"
    assert np.abs(np.asarray(out).astype(int) - np.asarray(model.image)).sum() > 0
    with pytest.raises(OpsError, match="inpaint_seams needs"):
        run_ops(garment.image, validate_ops([{"op": "onmodel", "model_sha256": sha,
                                              "inpaint_seams": True}]), ctx)
    with pytest.raises(OpsError, match="was not uploaded"):
        run_ops(garment.image, ops, OpContext(size=(320, 400)))
    with pytest.raises(OpsError, match="cannot follow onmodel"):
        validate_ops([{"op": "onmodel", "model_sha256": sha}, {"op": "compose"}])
    with pytest.raises(OpsError, match="model_sha256"):
        validate_ops([{"op": "onmodel"}])
    blank = Image.new("RGB", (320, 400), (236, 236, 234))
    with pytest.raises(OpsError, match=r"ops\[0\] \(onmodel\): no person"):
        run_ops(garment.image, ops, OpContext(size=(320, 400), products={sha: blank}))


def test_seam_inpaint_with_the_tiny_diffusion_pipeline(tiny_sd_dir):
    """With a diffusion engine that inpaints (random tiny weights: the pixels are noise, the
    behaviour is what is tested) the seam band is repainted and the rest is kept."""
    from swiftshot.config import DiffusionSettings
    from swiftshot.engines.diffusion import DiffusionEngine
    from swiftshot.spec import RenderSpec

    eng = DiffusionEngine(DiffusionSettings(model=str(tiny_sd_dir), dtype="fp32"))
    eng.load()
    spec = RenderSpec(prompt="clean seam", width=64, height=64, steps=2, seed=1,
                      engine="diffusion")
    calls = []

    def inpaint(image: Image.Image, repaint: np.ndarray) -> Image.Image:
        calls.append(repaint)
        mask = Image.fromarray((repaint * 255).astype(np.uint8), "L")
        return eng.run_inpaint([spec], [image.resize((64, 64))], [mask.resize((64, 64))])[0]

    model, garment = make_model(1, (320, 400)), make_garment(1, (320, 320))
    plain = dress(model.image, garment.image)
    res = dress(model.image, garment.image, inpaint=inpaint)
    assert len(calls) == 1 and calls[0].shape == (400, 320) and calls[0].any()
    a, b = np.asarray(plain.image).astype(int), np.asarray(res.image).astype(int)
    assert res.image.size == plain.image.size
    seam = res.seam
    assert np.abs(a[seam] - b[seam]).mean() > 2          # the seam band was repainted
    far = cv2.dilate(seam.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0
    assert np.array_equal(a[far], b[far])                   # the rest is untouched


# Long hair over the shoulders (issue 10, part 4): tuning seeds whose body keypoints the hair
# fooled before (the neck's narrowing and base hidden; blond hair on light skin, brown hair on
# brown skin, black hair over a black top). Measured before the fix: coverage 0.91-0.92,
# neckline 0.15-0.17, hair 0.26-0.47; after: coverage 0.985-0.992, neckline 0.044-0.057,
# hair 0.97 (black hair over a black top: 0.44, hair cannot be told from the top there).
LONG_HAIR = (20, 23, 52, 58)


@pytest.fixture(scope="module")
def dressed_long():
    return {seed: (make_model(seed), dress(make_model(seed).image, make_garment(seed).image))
            for seed in LONG_HAIR}


@pytest.mark.parametrize("seed", LONG_HAIR)
def test_long_hair_dressed_scores(dressed_long, seed):
    model, res = dressed_long[seed]
    assert model.params["long_hair"]
    s = score(res.garment_alpha, model, res.neckline_y)
    assert s["coverage"] >= 0.96 and s["inside"] >= 0.975, s
    assert s["neckline"] <= 0.07 and s["neck"] >= 0.95, s
    if seed != 23:                     # black hair over a black top: see above
        assert s["hair"] >= 0.9, s


@pytest.mark.parametrize("seed", LONG_HAIR)
def test_long_hair_body_keypoints(seed):
    """The neck's base and the shoulders found through the hair (the person mask exact)."""
    from swiftshot.ops.onmodel import _hair_above_shoulders

    model = make_model(seed)
    person = model.person >= 0.5
    b = find_body(person, _hair_above_shoulders(np.asarray(model.image), person))
    (lx, sy), (rx, _) = model.shoulders
    unit = model.params["unit"]
    assert abs(b.neck_base - model.neck_base[1]) < 0.12 * unit        # was 0.8 unit off
    assert abs(b.shoulder_l - lx) < 0.2 * unit and abs(b.shoulder_r - rx) < 0.2 * unit
    assert abs(b.shoulder_y - sy) < 0.15 * unit


def test_own_top_slivers_are_covered(dressed):
    """The model's own top does not show beside the garment: its colour (sampled mid-torso
    on the model photo) is on no torso pixel left uncovered next to the garment's edge."""
    model, _, res = dressed[1]
    g = res.garment_alpha >= 0.5
    edge = cv2.dilate(g.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~g
    src = np.asarray(model.image).astype(int)
    ys, xs = np.nonzero(model.torso)
    mid = src[int(np.median(ys)) - 5:int(np.median(ys)) + 5, int(np.median(xs)) - 5:int(np.median(xs)) + 5]
    top_c = np.median(mid.reshape(-1, 3), 0)
    out = np.asarray(res.image).astype(int)
    showing = edge & model.torso & (np.abs(out - top_c).sum(-1) < 25)
    assert showing.sum() < 0.002 * model.torso.sum(), showing.sum()
