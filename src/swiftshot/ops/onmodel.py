"""On-model shots: a garment photo put on a photo of a model (a person) the seller supplies.

Steps (``dress``):

1. **Person segmentation.** The model photo is cut out like a product (a person in a studio
   is one subject on a backdrop): ``PersonSegmenter`` — the cutout's classical segmenter, or
   an ONNX person model from a folder (``u2net_human_seg.onnx`` first, then the rembg-family
   models the cutout's ``auto`` knows), falling back to classical as the cutout's ``auto``
   does. No person (empty or whole-frame mask, or a silhouette without head and shoulders)
   is an error the caller answers with 422.
2. **Body keypoints** from the person mask (``find_body``): the width profile of the run
   under the head gives the head, the neck (its narrowest row), the neck base (where the
   width starts to grow into the shoulders), the shoulder line and points, the armpits
   (where the arms part from the torso, else from the shoulder width) and the hips (from
   the head height: the body's proportions).
3. **Garment keypoints** from its cutout (``find_garment``): neck points and neckline dip,
   shoulders, sleeve ends and armpits (none for a tank), hem corners.
4. **Piecewise-affine warp** of the garment: a mesh of triangles between those keypoints
   (plus a ring outside the outline, so no edge pixel is lost) maps each onto the body's —
   neckline on the neck base, shoulders on shoulders, sleeves turned down along the arms,
   the body's width to the torso's plus a little ease, the length kept in proportion.
5. **Occlusion.** The garment is drawn over the person, then the neck (above the neckline),
   hair lying in front of the shoulders (the colour of the hair on the crown, when it is not
   the skin's) and the forearms and hands below the sleeves are put back in front of it, and
   garment pixels more than a little off the person's silhouette are dropped.
6. **Light.** The garment takes the model photo's light: the low-frequency brightness of the
   torso in the model photo (relative to its median) multiplies it, and a little of the
   backdrop's colour cast. Edges are feathered (a pixel) and decontaminated.
7. **Seams.** With a diffusion engine that can inpaint, the band along the garment's outline
   is repainted and blended back softly (``inpaint`` callback); without, the feathered seam.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from swiftshot.ops.compose import alpha_bbox, decontaminate, split
from swiftshot.ops.cutout import (
    AUTO_ORDER,
    ClassicalParams,
    ClassicalSegmenter,
    OnnxSegmenter,
    Segmenter,
    cutout,
    mask_confidence,
)

PERSON_MODELS: tuple[str, ...] = ("u2net_human_seg", *AUTO_ORDER)
"""ONNX files (``NAME.onnx`` in the model folder) the person segmenter looks for, in order.
``u2net_human_seg`` is rembg's person model (U²-Net, 320², its pre/post-processing)."""


_K = {
    "sleeve3": "armpit_",  # a sleeve's third anchor (with shoulder and outer end): its armpit,
                           # so it joins the body's side (the end's inner corner left a gap of
                           # bare arm between sleeve and body, and wings at the shoulder)
    "inset": 0.02,         # shoulder points this share of the shoulder width inside the outline
    "hip": 2.65,           # hips this many head heights under the neck's base
    "ease": 1.13,          # the garment's width at the armpits over the torso's
    "dip": 0.7,            # the back of a crew neck this share of its dip above the neck's base
}
"""Knobs tuned on the tuning seeds (0-99 of ``testing/people.py``), never on the held-out."""


class NoPerson(ValueError):
    """The model photo shows no person we can dress (a 422 for the caller)."""


class PersonSegmenter:
    """``auto``: the first person/salient-object ONNX model in ``model_dir``, else classical;
    the classical one also when the model's mask is empty or the whole frame."""

    def __init__(self, kind: str = "auto", model_dir: str | Path | None = None) -> None:
        # The person's mask without the product cutout's dark-pixel floor in the matte (tenth
        # pass): the body, hair and neck heuristics below were tuned on the mask before it,
        # and with it a garment on a long-haired model in black lost half its coverage (0.99
        # -> 0.51). Re-tuning them is on-model work, not done here.
        self.classical = ClassicalSegmenter(ClassicalParams(dark_is_product=False))
        self.model: OnnxSegmenter | None = None
        if kind not in ("auto", "classical"):
            raise ValueError(f"person segmenter must be auto or classical; got {kind!r}")
        folder = Path(model_dir) if model_dir else None
        if kind == "auto" and folder is not None and folder.is_dir():
            for name in PERSON_MODELS:
                path = folder / f"{name}.onnx"
                if path.is_file():
                    pre = "u2net" if name == "u2net_human_seg" else name
                    self.model = OnnxSegmenter(path, pre)
                    self.model.name = f"onnx:{name}"
                    break
        self.name = self.model.name if self.model else "classical"

    def mask(self, image: Image.Image) -> np.ndarray:
        if self.model is not None:
            m = self.model.mask(image)
            if mask_confidence(m) > 0:
                return m
        rgba = cutout(image.convert("RGB"), self.classical)
        return np.asarray(rgba.getchannel("A"), np.float32) / 255.0


# -- the body ----------------------------------------------------------------------------------

@dataclass
class Body:
    cx: float
    top: float
    neck_y: float
    """Narrowest row of the neck."""
    neck_half: float
    neck_base: float
    """Row where the neck meets the shoulders (a crew neckline sits here)."""
    shoulder_y: float
    shoulder_l: float
    shoulder_r: float
    armpit_y: float
    torso_l: float
    torso_r: float
    """Torso sides at the armpits."""
    hip_y: float
    hip_l: float
    hip_r: float
    arm_angle: float
    """Arms' angle from the vertical, radians (outwards positive)."""
    head: float
    """Head height (crown to the narrowest neck row)."""

    @property
    def shoulder_w(self) -> float:
        return self.shoulder_r - self.shoulder_l


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return list(zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0], strict=True))


def _run_at(row: np.ndarray, x: float) -> tuple[int, int] | None:
    best = None
    for a, b in _runs(row):
        if a <= x < b:
            return a, b
        dist = min(abs(a - x), abs(b - x))
        if best is None or dist < best[0]:
            best = (dist, (a, b))
    return best[1] if best and best[0] < 3 else None


def _main_component(person: np.ndarray) -> np.ndarray:
    m = person >= 0.5 if person.dtype != bool else person
    h, w = m.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 1:
        raise NoPerson("no person was found in the model photo (its cutout is empty)")
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[big, cv2.CC_STAT_AREA] < 0.02 * h * w:
        raise NoPerson("no person was found in the model photo (the subject is tiny)")
    if stats[big, cv2.CC_STAT_AREA] > 0.9 * h * w:
        raise NoPerson("no person was found in the model photo (no backdrop around a subject)")
    return labels == big


def _head_band(m: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, head width, centre x) of a person mask: the width of the top twelfth
    of the body (the crown: hair or head) and its centre."""
    rows = np.nonzero(m.any(1))[0]
    top, bottom = int(rows[0]), int(rows[-1])
    band = m[top:top + max(3, (bottom - top) // 12)]
    cols = np.nonzero(band.any(0))[0]
    hw = int(cols.max() - cols.min() + 1)
    r = m[top + max(1, hw // 10)]
    cx = int(np.nonzero(r)[0].mean()) if r.any() else int(cols.mean())
    return top, bottom, hw, cx


def _rough_shoulder_row(m: np.ndarray) -> int:
    """The first row under the head where the silhouette's run under the head is 1.6 crown
    widths wide (the shoulders' slope): hair hanging beside the neck never is, so hair is
    looked for above this row only (below it, a top of the hair's colour would be taken)."""
    top, bottom, hw, cx = _head_band(m)
    x = float(cx)
    for y in range(top + hw // 2, bottom):
        r = _run_at(m[y], x)
        if r is None:
            continue
        if r[1] - r[0] >= 1.6 * hw:
            return y
        x = 0.5 * (r[0] + r[1])
    return bottom


def find_body(person: np.ndarray, hair: np.ndarray | None = None) -> Body:
    """Body keypoints of a front-on person from its mask (bool/float HxW). ``NoPerson`` when
    the silhouette has no head-neck-shoulders profile. ``hair`` (bool HxW, optional): hair
    pixels above the shoulders; in those rows the width is the span of the rest (the face,
    the neck, the shoulders' outline), so hair hanging beside the neck hides neither the
    neck's narrowing nor its base."""
    m = _main_component(person)
    h, w = m.shape
    rows = np.nonzero(m.any(1))[0]
    top, bottom = int(rows[0]), int(rows[-1])
    prof = m
    if hair is not None and hair.any():
        hrows = np.nonzero(hair.any(1))[0]
        y0, y1 = int(hrows[0]), int(hrows[-1]) + 1
        rest = cv2.morphologyEx((m[y0:y1] & ~hair[y0:y1]).astype(np.uint8), cv2.MORPH_OPEN,
                                np.ones((3, 3), np.uint8))
        # the face, the neck and the body: the part left that holds the face (not slivers
        # at the edges), else the largest
        n, lab, st, _ = cv2.connectedComponentsWithStats(rest, connectivity=8)
        _, _, hw, hcx = _head_band(m)
        fy = min(max(top + int(0.62 * hw) - y0, 0), y1 - y0 - 1)
        face_id = int(lab[fy, hcx])
        if face_id > 0:
            rest = lab == face_id
        elif n > 1:
            rest = lab == 1 + int(np.argmax(st[1:, cv2.CC_STAT_AREA]))
        rest = rest.astype(bool)
        has = rest.any(1)
        lo = np.where(has, np.argmax(rest, 1), w)
        hi = np.where(has, w - 1 - np.argmax(rest[:, ::-1], 1), -1)
        xs = np.arange(w)[None, :]
        prof = m.copy()
        prof[y0:y1] = (xs >= lo[:, None]) & (xs <= hi[:, None])
    # Track the run under the head down the body (from the face when the crown is hair).
    cnt = prof.sum(1)
    crown_w = int(np.ptp(np.nonzero(m[top:top + max(3, (bottom - top) // 12)].any(0))[0])) + 1
    ptop = int(np.argmax(cnt >= max(3, 0.3 * crown_w)))
    prof[:ptop] = False
    empty = ~prof.any(1)
    empty[:ptop] = False
    prof[empty] = m[empty]          # a row all hair under the face: the silhouette's own
    cx = float(np.nonzero(prof[ptop + max(2, (bottom - top) // 40)])[0].mean())
    widths = np.zeros(h)
    lefts, rights = np.zeros(h), np.zeros(h)
    x = cx
    for y in range(ptop, bottom + 1):
        r = _run_at(prof[y], x)
        if r is None:
            continue
        lefts[y], rights[y] = r
        widths[y] = r[1] - r[0]
        if y < top + 0.25 * (bottom - top):
            x = 0.5 * (r[0] + r[1])
    head_max, head_y = 0.0, ptop
    neck_y = None
    past_head = False
    for y in range(ptop, bottom + 1):
        if not past_head:
            if widths[y] > head_max:
                head_max, head_y = widths[y], y
            elif widths[y] < 0.9 * head_max or y > top + 1.25 * head_max:
                past_head = True
        elif widths[y] > 1.6 * max(head_max, 1):
            # shoulders: the neck is the narrowest row between the head's widest and here
            seg = widths[head_y:y]
            neck_y = head_y + int(np.argmin(seg))
            break
    if neck_y is None or head_max < 4:
        raise NoPerson("no person was found in the model photo (no head and shoulders: send "
                       "a front-on photo of a model, head to at least the hips)")
    neck_w = widths[neck_y]
    cx = 0.5 * (lefts[neck_y] + rights[neck_y])
    head = float(neck_y - top)
    neck_base = neck_y
    for y in range(neck_y, bottom):
        if widths[y] > 1.45 * neck_w:
            neck_base = y
            break
    # Hair lying in front of the neck's base hides where it widens: the body's proportions
    # put the base no further than 0.56 head heights under the neck's narrowest row (the
    # short-haired models, whose base is seen, measure 0.55-0.58).
    neck_base = min(neck_base, neck_y + int(round(0.56 * head)))
    # The shoulders' line: 93 % of the widest row within 0.6 head heights under the neck's
    # base (further down, arms held away from the body widen the silhouette and would pull
    # the line down, baring the shoulders above the garment's).
    win = widths[neck_base:min(bottom, neck_base + int(0.6 * head))]
    wmax = float(win.max()) if len(win) else float(widths[neck_base])
    sh = neck_base + int(np.argmax(win >= 0.93 * wmax))
    sl, sr = float(lefts[sh]), float(rights[sh])
    inset = _K['inset'] * (sr - sl)
    sl, sr = sl + inset, sr - inset
    # Long hair hides the neck's narrowing: the head is never less than about half the
    # shoulder width tall.
    head = max(head, 0.45 * (sr - sl))
    # Armpits: the first row below the shoulders where the arms part from the torso (three
    # runs), within reach; else the body's proportions.
    armpit = None
    # (Arms that touch the torso part from it only at the waist: a row found further than
    # 0.75 head heights under the shoulders is the waist, not the armpit.)
    for y in range(sh + int(0.2 * head), min(bottom, sh + int(0.75 * head))):
        runs = [r for r in _runs(m[y]) if r[1] - r[0] > 2]
        mid = [r for r in runs if r[0] <= cx < r[1]]
        if len(runs) >= 3 and mid and (mid[0][1] - mid[0][0]) < 0.85 * (sr - sl):
            armpit = (y, mid[0])
            break
    if armpit is not None:
        ay, (tl, tr) = armpit[0], (float(armpit[1][0]), float(armpit[1][1]))
    else:
        ay = sh + int(0.6 * head)
        tl, tr = sl + 0.12 * (sr - sl), sr - 0.12 * (sr - sl)
    hip_y = min(float(bottom), neck_base + _K['hip'] * head)
    hip_half = 0.5 * (tr - tl) * 1.0
    hy = int(min(hip_y, bottom))
    runs = [r for r in _runs(m[hy]) if r[1] - r[0] > 2]
    mid = [r for r in runs if r[0] <= cx < r[1]]
    if mid and len(runs) >= 3 and (mid[0][1] - mid[0][0]) < 1.1 * (tr - tl):
        hip_half = 0.5 * (mid[0][1] - mid[0][0])
    # Arm angle: the outer edge of the silhouette below the armpit against the shoulder.
    y2 = int(min(bottom, ay + 0.8 * head))
    outer_l, outer_r = float(np.nonzero(m[y2])[0].min()), float(np.nonzero(m[y2])[0].max())
    ang_l = np.arctan2(sl - outer_l - 0.1 * head, max(y2 - sh, 1))
    ang_r = np.arctan2(outer_r - sr - 0.1 * head, max(y2 - sh, 1))
    ang = float(np.clip(0.5 * (ang_l + ang_r), 0.0, 0.5))
    return Body(cx=cx, top=top, neck_y=neck_y, neck_half=0.5 * neck_w, neck_base=neck_base,
                shoulder_y=sh, shoulder_l=sl, shoulder_r=sr, armpit_y=ay, torso_l=tl, torso_r=tr,
                hip_y=hip_y, hip_l=cx - hip_half, hip_r=cx + hip_half, arm_angle=ang, head=head)


# -- the garment -------------------------------------------------------------------------------

@dataclass
class GarmentPoints:
    pts: dict[str, tuple[float, float]]
    sleeves: bool
    width: float
    """Body width (hem)."""


def find_garment(alpha: np.ndarray) -> GarmentPoints:
    """Keypoints of an upright top (flat lay or hollow) from its alpha."""
    m = alpha >= 0.5
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 1:
        raise ValueError("no garment was found in the garment photo (its cutout is empty)")
    m = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    rows = np.nonzero(m.any(1))[0]
    top, bottom = int(rows[0]), int(rows[-1])
    hgt = bottom - top
    yb = top + int(0.85 * hgt)
    cols = np.nonzero(m[yb])[0]
    cx0 = float(np.nonzero(m[top + int(0.7 * hgt):bottom + 1].any(0))[0].mean())
    r = _run_at(m[yb], cx0) or (int(cols.min()), int(cols.max()) + 1)
    bl, br = float(r[0]), float(r[1])
    cx = 0.5 * (bl + br)
    bw = br - bl
    # Hem corners: the body's run near the bottom.
    yh = bottom - max(1, hgt // 100)
    rh = _run_at(m[yh], cx) or (int(bl), int(br))
    # Top edge per column.
    has = m.any(0)
    first = np.where(has, np.argmax(m, 0), h_big := m.shape[0])
    nl_x = int(cx - 0.36 * 0.5 * bw)
    nr_x = int(cx + 0.36 * 0.5 * bw)
    span_l = first[max(0, int(cx - 0.5 * bw)):int(cx)]
    span_r = first[int(cx):int(cx + 0.5 * bw)]
    # Neck points: the highest points of the top edge either side of the centre.
    if len(span_l) and len(span_r):
        nl_x = int(cx - 0.5 * bw) + int(np.argmin(span_l))
        nr_x = int(cx) + int(np.argmin(span_r))
    neck_top = 0.5 * (first[nl_x] + first[nr_x])
    dip = float(first[int(cx)]) if first[int(cx)] < h_big else neck_top
    if dip - neck_top < 0.03 * bw:       # no opening seen (its inside back kept): a crew neck
        dip = neck_top + 0.1 * bw
    sl_y = float(first[min(max(int(bl + 2), 0), m.shape[1] - 1)])
    sr_y = float(first[min(max(int(br - 3), 0), m.shape[1] - 1)])
    pts = {"neck_l": (float(nl_x), float(first[nl_x])), "neck_r": (float(nr_x), float(first[nr_x])),
           "dip": (cx, dip), "shoulder_l": (bl, sl_y), "shoulder_r": (br, sr_y),
           "hem_l": (float(rh[0]), float(yh)), "hem_r": (float(rh[1]), float(yh)),
           "hem_c": (cx, float(yh))}
    # Sleeves: garment beyond the body's sides above the hem.
    left = m[:, :max(int(bl) - 2, 0)]
    right = m[:, int(br) + 2:]
    sleeves = left.sum() > 0.01 * m.sum() and right.sum() > 0.01 * m.sum()
    if sleeves:
        for side, part, off in (("l", left, 0), ("r", right, int(br) + 2)):
            ys, xs = np.nonzero(part)
            xs = xs + off
            ext = xs.min() if side == "l" else xs.max()
            band = np.abs(xs - ext) < max(2, 0.04 * bw)
            eys = ys[band]
            exs = xs[band]
            o = (float(exs[np.argmin(eys)]), float(eys.min()))
            i = (float(exs[np.argmax(eys)]), float(eys.max()))
            # The sleeve's end edge: the outer corner is the upper one, the inner the lower.
            pts[f"sleeve_o{side}"] = o
            pts[f"sleeve_i{side}"] = i
            # Armpit: where the sleeve's underside meets the body's side: the lowest garment
            # pixel (in the top 60 %) of the column just outside the side. (Not the lowest row
            # reaching past the side: a long sleeve hangs far below the armpit.)
            col = int(bl - max(2, 0.02 * bw)) if side == "l" else int(br + max(2, 0.02 * bw))
            col = min(max(col, 0), m.shape[1] - 1)
            ys_col = np.nonzero(m[:top + int(0.6 * hgt), col])[0]
            ay = float(ys_col.max()) if len(ys_col) else float(np.nonzero(part.any(1))[0].max())
            pts[f"armpit_{side}"] = (bl if side == "l" else br, ay)
    else:
        # Tank: the armhole's bottom: lowest row of the top where the side is cut in.
        for side, x in (("l", bl + 1), ("r", br - 2)):
            pts[f"armpit_{side}"] = (float(x), float(first[int(x)]) + 0.02 * bw)
    return GarmentPoints(pts, sleeves, bw)


# -- the warp ----------------------------------------------------------------------------------

def _targets(g: GarmentPoints, b: Body) -> dict[str, tuple[float, float]]:
    p = g.pts
    gsw = p["shoulder_r"][0] - p["shoulder_l"][0]
    s = b.shoulder_w / max(gsw, 1.0)                      # garment → body scale
    gsy = 0.5 * (p["shoulder_l"][1] + p["shoulder_r"][1])
    out: dict[str, tuple[float, float]] = {}
    # The neckline's dip sits on the neck base (a crew neck); the rest follows from the scale.
    dip_drop = (p["dip"][1] - 0.5 * (p["neck_l"][1] + p["neck_r"][1])) * s
    neck_top = b.neck_base - dip_drop * _K['dip']
    out["dip"] = (b.cx, neck_top + dip_drop)
    gnh = 0.5 * (p["neck_r"][0] - p["neck_l"][0]) * s
    nh = max(gnh, b.neck_half * 1.15)
    out["neck_l"] = (b.cx - nh, neck_top)
    out["neck_r"] = (b.cx + nh, neck_top)
    sy = max(b.shoulder_y - 0.02 * b.shoulder_w, neck_top + (gsy - p["neck_l"][1]) * s)
    out["shoulder_l"] = (b.shoulder_l, sy)
    out["shoulder_r"] = (b.shoulder_r, sy)
    ease = _K['ease']
    ay = b.armpit_y
    out["armpit_l"] = (b.cx - (b.cx - b.torso_l) * ease, ay)
    out["armpit_r"] = (b.cx + (b.torso_r - b.cx) * ease, ay)
    # The length in proportion, but a top at least reaches past the hips.
    hem_y = max(sy + (p["hem_c"][1] - gsy) * s, b.hip_y + 0.25 * b.head)
    hem_half_g = 0.5 * (p["hem_r"][0] - p["hem_l"][0]) * s
    hip_half = 0.5 * (b.hip_r - b.hip_l)
    hem_half = float(np.clip(hem_half_g, hip_half * 1.07, hip_half * 1.18))
    out["hem_l"] = (b.cx - hem_half, hem_y)
    out["hem_r"] = (b.cx + hem_half, hem_y)
    out["hem_c"] = (b.cx, hem_y)
    if g.sleeves:
        for side, sgn in (("l", -1), ("r", 1)):
            sh = p[f"shoulder_{side}"]
            o, i = p[f"sleeve_o{side}"], p[f"sleeve_i{side}"]
            length = np.hypot(o[0] - sh[0], o[1] - sh[1]) * s
            opening = np.hypot(o[0] - i[0], o[1] - i[1]) * s
            ang = b.arm_angle + 0.08
            tsh = out[f"shoulder_{side}"]
            ox = tsh[0] + sgn * (np.sin(ang) * length + 0.02 * b.shoulder_w)
            oy = tsh[1] + np.cos(ang) * length
            out[f"sleeve_o{side}"] = (ox, oy)
            out[f"sleeve_i{side}"] = (ox - sgn * np.cos(ang) * opening, oy - 0.0 + np.sin(ang) * opening * 0.3)
    return out


def _outline(g: GarmentPoints) -> list[str]:
    if g.sleeves:
        return ["neck_l", "shoulder_l", "sleeve_ol", "sleeve_il", "armpit_l", "hem_l", "hem_c",
                "hem_r", "armpit_r", "sleeve_ir", "sleeve_or", "shoulder_r", "neck_r", "dip"]
    return ["neck_l", "shoulder_l", "armpit_l", "hem_l", "hem_c", "hem_r", "armpit_r",
            "shoulder_r", "neck_r", "dip"]


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 matrix mapping dst → src for one triangle (for an inverse map)."""
    return cv2.getAffineTransform(dst.astype(np.float32), src.astype(np.float32))


def _mesh(g: GarmentPoints, tgt: dict[str, tuple[float, float]]
          ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(src triangle, dst triangle) pairs: a fan around the body's centre, the sleeves, and a
    ring outside the outline (so the outline's own pixels are inside some triangle)."""
    p = g.pts
    names = _outline(g)
    src = {k: np.array(p[k], np.float64) for k in names}
    dst = {k: np.array(tgt[k], np.float64) for k in names}
    c_src = 0.5 * (np.array(p["dip"]) + np.array(p["hem_c"]))
    c_dst = 0.5 * (np.array(tgt["dip"]) + np.array(tgt["hem_c"]))
    body = [k for k in names if not k.startswith("sleeve")]
    tris: list[tuple[np.ndarray, np.ndarray]] = []
    for a, b in zip(body, body[1:] + body[:1], strict=True):
        tris.append((np.array([src[a], src[b], c_src]), np.array([dst[a], dst[b], c_dst])))
    if g.sleeves:
        for s in ("l", "r"):
            for tri in ((f"shoulder_{s}", f"sleeve_o{s}", f"sleeve_i{s}"),
                        (f"shoulder_{s}", f"sleeve_i{s}", f"armpit_{s}")):
                tris.append((np.array([src[k] for k in tri]), np.array([dst[k] for k in tri])))
    # Outer ring: push each outline vertex out along its normal, carried by a nearby
    # triangle's linear map.
    margin = 0.06 * g.width
    ring_src, ring_dst = {}, {}
    n = len(names)
    centroid = np.mean([src[k] for k in names], 0)
    for i, k in enumerate(names):
        prev, nxt = src[names[i - 1]], src[names[(i + 1) % n]]
        t = nxt - prev
        nrm = np.array([t[1], -t[0]]) / max(np.hypot(*t), 1e-6)
        if np.dot(nrm, src[k] - centroid) < 0:
            nrm = -nrm
        if k == "dip":
            nrm = np.array([0.0, -1.0])
        o = src[k] + nrm * margin
        # local linear map from the neighbouring outline edge and the centre
        tri_s = np.array([prev, src[k], c_src], np.float32)
        tri_d = np.array([dst[names[i - 1]], dst[k], c_dst], np.float32)
        if abs(_cross(tri_s[1] - tri_s[0], tri_s[2] - tri_s[0])) < 1e-3:
            tri_s = np.array([src[k], nxt, c_src], np.float32)
            tri_d = np.array([dst[k], dst[names[(i + 1) % n]], c_dst], np.float32)
        a = cv2.getAffineTransform(tri_s, tri_d)
        ring_src[k] = o
        ring_dst[k] = a[:, :2] @ o + a[:, 2]
    ring: list[tuple[np.ndarray, np.ndarray]] = []
    for i, a in enumerate(names):
        b = names[(i + 1) % n]
        ring.append((np.array([src[a], src[b], ring_src[b]]), np.array([dst[a], dst[b], ring_dst[b]])))
        ring.append((np.array([src[a], ring_src[b], ring_src[a]]),
                     np.array([dst[a], ring_dst[b], ring_dst[a]])))
    return ring + tris  # the ring first: the mesh's own triangles are drawn over it


def warp_pieces(rgba: np.ndarray, tris: list[tuple[np.ndarray, np.ndarray]],
                size: tuple[int, int]) -> np.ndarray:
    """Piecewise-affine warp of ``rgba`` (premultiplied is not needed: alpha travels along)
    onto a canvas of ``size`` (w, h). Later triangles win where two overlap."""
    w, h = size
    idx = np.zeros((h, w), np.int32)
    mats = [np.zeros((2, 3), np.float32)]
    for k, (s, d) in enumerate(tris, start=1):
        if abs(_cross(d[1] - d[0], d[2] - d[0])) < 1e-6 or abs(_cross(s[1] - s[0], s[2] - s[0])) < 1e-6:
            mats.append(np.zeros((2, 3), np.float32))
            continue
        mats.append(_affine(s, d))
        cv2.fillConvexPoly(idx, np.round(d * 16).astype(np.int32), k, cv2.LINE_8, 4)
    m = np.stack(mats)
    ys, xs = np.nonzero(idx)
    out = np.zeros((h, w, 4), np.uint8)
    if not len(ys):
        return out
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub = idx[y0:y1, x0:x1]
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    a = m[sub]
    mx = a[..., 0, 0] * gx + a[..., 0, 1] * gy + a[..., 0, 2]
    my = a[..., 1, 0] * gx + a[..., 1, 1] * gy + a[..., 1, 2]
    mx[sub == 0] = -10
    mx, my = mx.astype(np.float32), my.astype(np.float32)
    return _remap_into(out, rgba, mx, my, x0, y0)


def _control_points(tris: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's vertices, once each: (src n×2, dst n×2)."""
    seen: dict[tuple[int, int], np.ndarray] = {}
    for s_tri, d_tri in tris:
        for a, b in zip(s_tri, d_tri, strict=True):
            seen.setdefault((round(float(a[0]) * 4), round(float(a[1]) * 4)),
                            np.concatenate([a, b]))
    arr = np.array(list(seen.values()), np.float64)
    return arr[:, :2], arr[:, 2:]


def _tps_solve(p: np.ndarray, q: np.ndarray, reg: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate spline from points p (n×2, normalised) to values q (n×2)."""
    n = len(p)
    d2 = ((p[:, None] - p[None]) ** 2).sum(-1)
    k = np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-12)), 0.0) + reg * np.eye(n)
    pp = np.hstack([np.ones((n, 1)), p])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n], a[:n, n:], a[n:, :n] = k, pp, pp.T
    b = np.zeros((n + 3, 2))
    b[:n] = q
    sol = np.linalg.lstsq(a, b, rcond=None)[0]
    return sol[:n], sol[n:]


def warp_tps(rgba: np.ndarray, src: np.ndarray, dst: np.ndarray, size: tuple[int, int],
             step: int = 4) -> np.ndarray:
    """Warp ``rgba`` so that the points ``src`` land on ``dst``: a thin-plate spline from the
    canvas to the garment photo (the inverse map), evaluated on a grid every ``step`` pixels
    over the target's box and interpolated — smooth everywhere (a print stays round, stripes
    stay straight), unlike one affine per triangle."""
    w, h = size
    out = np.zeros((h, w, 4), np.uint8)
    scale = max(float(np.ptp(dst[:, 0])), float(np.ptp(dst[:, 1])), 1.0)
    origin = dst.min(0)
    pn = (dst - origin) / scale
    wts, aff = _tps_solve(pn, src)
    x0, y0 = (np.floor(dst.min(0)) - 2).astype(int)
    x1, y1 = (np.ceil(dst.max(0)) + 3).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return out
    gx = np.arange(x0, x1 + step, step, dtype=np.float64)
    gy = np.arange(y0, y1 + step, step, dtype=np.float64)
    xx, yy = np.meshgrid(gx, gy)
    g = (np.stack([xx.ravel(), yy.ravel()], 1) - origin) / scale
    d2 = ((g[:, None] - pn[None]) ** 2).sum(-1)
    u = np.where(d2 > 0, d2 * np.log(np.maximum(d2, 1e-12)), 0.0)
    m = u @ wts + aff[0] + g @ aff[1:]
    mx = m[:, 0].reshape(xx.shape).astype(np.float32)
    my = m[:, 1].reshape(xx.shape).astype(np.float32)
    bw, bh = x1 - x0, y1 - y0
    # grid node i sits at x0 + i*step: resize with that alignment
    big_w, big_h = (len(gx) - 1) * step + 1, (len(gy) - 1) * step + 1
    mx = cv2.resize(mx, (big_w, big_h), interpolation=cv2.INTER_LINEAR)[:bh, :bw]
    my = cv2.resize(my, (big_w, big_h), interpolation=cv2.INTER_LINEAR)[:bh, :bw]
    return _remap_into(out, rgba, mx, my, x0, y0)


def _remap_into(out: np.ndarray, rgba: np.ndarray, mx: np.ndarray, my: np.ndarray,
                x0: int, y0: int) -> np.ndarray:
    """Sample ``rgba`` at the maps (mx, my) into ``out`` at (x0, y0); premultiplied, so the
    bilinear sampling does not drag the old backdrop's colour in."""
    pm = rgba.astype(np.float32)
    pm[..., :3] *= pm[..., 3:4] / 255.0
    warped = cv2.remap(pm, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=(0, 0, 0, 0))
    al = warped[..., 3:4]
    warped[..., :3] = np.where(al > 0.5, warped[..., :3] * 255.0 / np.maximum(al, 1e-3), 0)
    h, w = warped.shape[:2]
    out[y0:y0 + h, x0:x0 + w] = np.clip(warped + 0.5, 0, 255).astype(np.uint8)
    return out


def _over(top: np.ndarray, under: np.ndarray) -> np.ndarray:
    """RGBA ``top`` over RGBA ``under`` (uint8, straight alpha)."""
    ta = top[..., 3:4].astype(np.float32) / 255
    ua = under[..., 3:4].astype(np.float32) / 255
    a = ta + ua * (1 - ta)
    rgb = (top[..., :3] * ta + under[..., :3] * ua * (1 - ta)) / np.maximum(a, 1e-6)
    return np.dstack([np.clip(rgb + 0.5, 0, 255), np.clip(a * 255 + 0.5, 0, 255)]).astype(np.uint8)


def _warp_parts(rgba: np.ndarray, gp: GarmentPoints, tgt: dict[str, tuple[float, float]],
                size: tuple[int, int]) -> np.ndarray:
    """The body by a thin-plate spline on its own keypoints (nearly affine: stripes stay
    straight, a print round), each sleeve by the affine map of its shoulder and end corners
    (turned down along the arm), sleeves under the body."""
    w, h = size
    body_gp = GarmentPoints(gp.pts, False, gp.width)
    src, dst = _control_points(_mesh(body_gp, tgt))
    if not gp.sleeves:
        return warp_tps(rgba, src, dst, size)
    xl, xr = gp.pts["shoulder_l"][0], gp.pts["shoulder_r"][0]
    cols = np.arange(rgba.shape[1])[None, :]
    body = rgba.copy()
    body[..., 3] = np.where((cols >= xl - 1) & (cols <= xr + 1), body[..., 3], 0)
    out = np.zeros((h, w, 4), np.uint8)
    for side, keep in (("l", cols < xl + 2), ("r", cols > xr - 2)):
        part = rgba.copy()
        part[..., 3] = np.where(keep, part[..., 3], 0)
        names = (f"shoulder_{side}", f"sleeve_o{side}", _K['sleeve3'] + side)
        m = cv2.getAffineTransform(np.float32([gp.pts[k] for k in names]),
                                   np.float32([tgt[k] for k in names]))
        # only the sleeve's own box, on its box of the canvas
        ys, xs = np.nonzero(part[..., 3])
        if not len(ys):
            continue
        sy0, sy1, sx0, sx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        corners = np.array([[sx0, sy0, 1], [sx1, sy0, 1], [sx0, sy1, 1], [sx1, sy1, 1]],
                           np.float64) @ m.T
        cx0, cy0 = np.maximum(np.floor(corners.min(0)) - 2, 0).astype(int)
        cx1, cy1 = np.minimum(np.ceil(corners.max(0)) + 3, [w, h]).astype(int)
        if cx1 <= cx0 or cy1 <= cy0:
            continue
        pm = part[sy0:sy1, sx0:sx1].astype(np.float32)
        pm[..., :3] *= pm[..., 3:4] / 255.0
        mm = m.copy()
        mm[:, 2] += m[:, :2] @ np.array([sx0, sy0], np.float64) - np.array([cx0, cy0])
        wp = cv2.warpAffine(pm, mm, (int(cx1 - cx0), int(cy1 - cy0)), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        al = wp[..., 3:4]
        wp[..., :3] = np.where(al > 0.5, wp[..., :3] * 255.0 / np.maximum(al, 1e-3), 0)
        sub = (slice(cy0, cy1), slice(cx0, cx1))
        out[sub] = _over(np.clip(wp + 0.5, 0, 255).astype(np.uint8), out[sub])
    body_w = warp_tps(body, src, dst, size)
    ys, xs = np.nonzero(out[..., 3])
    if len(ys):                       # the body over the sleeves, where there are sleeves
        sub = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        body_w[sub] = _over(body_w[sub], out[sub])
    return body_w


# -- compositing -------------------------------------------------------------------------------

@dataclass
class Dressed:
    image: Image.Image
    garment_alpha: np.ndarray
    """float32 HxW: the garment's final alpha on the model photo (occlusion applied)."""
    body: Body
    neckline_y: float
    seam: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), bool))
    person_segmenter: str = "classical"


class _Lab:
    """Lab of the photo on the person's box only (the rest is never asked for)."""

    def __init__(self, rgb: np.ndarray, person: np.ndarray) -> None:
        m = person >= 0.5 if person.dtype != bool else person
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        self.shape = m.shape
        if not len(rows):
            self.box = (0, 0, 0, 0)
            self.lab = np.zeros((0, 0, 3), np.float32)
            return
        self.box = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        y0, y1, x0, x1 = self.box
        self.lab = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]),
                                cv2.COLOR_RGB2LAB).astype(np.float32)


def _lab_dist(lab: _Lab, c: np.ndarray, wts: np.ndarray) -> np.ndarray:
    """Weighted Lab distance to ``c`` (full-size; +inf off the person's box)."""
    out = np.full(lab.shape, np.inf, np.float32)
    y0, y1, x0, x1 = lab.box
    diff = (lab.lab - c) * wts
    out[y0:y1, x0:x1] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out


def _colour(rgb: np.ndarray) -> np.ndarray:
    """Lab (float32) of the median colour of an RGB patch."""
    med = np.median(rgb.reshape(-1, 3), 0).astype(np.uint8)[None, None]
    return cv2.cvtColor(med, cv2.COLOR_RGB2LAB)[0, 0].astype(np.float32)


_HAIR_W = np.array([0.4, 1, 1], np.float32)
"""Lab weights for hair against skin: the light across a head changes L more than hue."""


def _hair_above_shoulders(rgb: np.ndarray, person: np.ndarray) -> np.ndarray | None:
    """Hair above the shoulders: pixels of the crown's colour joined to the crown, in the rows
    above the shoulders' slope (``_rough_shoulder_row``: below it a top of the hair's colour
    would join in). ``None`` when the crown is the face's colour (a bald head, or hair that
    cannot be told from the skin). The colour cut adapts to how far the hair is from the skin
    (blond hair on light skin, brown hair on dark skin are close)."""
    m = _main_component(person)
    top, bottom, hw, cx = _head_band(m)
    crown = rgb[top + 1:top + max(2, hw // 6), max(0, cx - hw // 6):cx + hw // 6 + 1]
    fy = top + int(0.62 * hw)
    face = rgb[fy - 2:fy + 3, max(0, cx - hw // 10):cx + hw // 10 + 1]
    if crown.size == 0 or face.size == 0:
        return None
    c, f = _colour(crown), _colour(face)
    sep = float(np.linalg.norm((c - f) * _HAIR_W))
    if sep < 6:
        return None
    y1 = _rough_shoulder_row(m)
    sub = _Lab(rgb[:y1], m[:y1])
    near = (_lab_dist(sub, c, _HAIR_W) < min(16.0, 0.45 * sep)) & m[:y1]
    near = cv2.morphologyEx(near.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    cband = labels[top:top + max(2, hw // 6)]
    ids = np.unique(cband[cband > 0])
    if not len(ids):
        return None
    hair = np.zeros(person.shape, bool)
    hair[:y1] = cv2.dilate(np.isin(labels, ids).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    hair &= m
    # Under the face, "hair" across the body's middle is the top of clothes of its colour
    # (black hair over a black top): the hair ends above that row.
    mid = hair[fy:, max(0, cx - 2):cx + 3].any(1)
    if mid.any():
        hair[fy + int(np.argmax(mid)):] = False
    if hair[fy, cx]:
        return None            # the face went with it: the colours are not told apart
    return hair


def _neck_front(b: Body, person: np.ndarray, neckline_y: float) -> np.ndarray:
    """The neck above the neckline: the person's neck column from the narrowest row down to
    the neckline, a little wider at the base."""
    h, w = person.shape
    yy, xx = np.ogrid[0:h, 0:w]
    t = np.clip((yy - b.neck_y) / max(neckline_y - b.neck_y, 1), 0, 1)
    half = b.neck_half * (1.0 + 0.25 * t)
    return (person >= 0.5) & (yy <= neckline_y) & (np.abs(xx - b.cx) <= half)


def _hair_front(rgb: np.ndarray, person: np.ndarray, b: Body,
                hair_above: np.ndarray | None) -> np.ndarray:
    """Hair lying in front of the shoulders and chest: each strand of the hair found above
    the shoulders (``_hair_above_shoulders``) followed down row by row through the pixels of
    its colour. A strand's edge that stays put is followed; where the strand runs into
    something of its own colour (black hair over a black top, blond hair over light skin) the
    edge is carried on along its own slope instead of spreading over it, and a strand with
    neither edge seen for 0.3 head heights ends (it cannot be told from the top there)."""
    h, w = person.shape
    out = np.zeros((h, w), bool)
    if hair_above is None or not hair_above.any():
        return out
    rows = np.nonzero(hair_above.any(1))[0]
    y1 = int(rows[-1]) + 1
    top = int(b.top)
    crown = rgb[top + max(1, int(0.06 * b.head)):top + max(2, int(0.14 * b.head)),
                int(b.cx - 0.15 * b.head):int(b.cx + 0.15 * b.head)]
    face = rgb[top + int(0.45 * b.head):top + int(0.6 * b.head),
               int(b.cx - 0.12 * b.head):int(b.cx + 0.12 * b.head)]
    if crown.size == 0 or face.size == 0:
        return out
    c, f = _colour(crown), _colour(face)
    sep = float(np.linalg.norm((c - f) * _HAIR_W))
    sub = person >= 0.5
    sub[:y1] = False
    lab = _Lab(rgb, sub)
    near = (_lab_dist(lab, c, _HAIR_W) < min(14.0, 0.45 * sep)) & sub
    strands = [[float(a), float(e - 1), 0.0, 0.0, 0] for a, e in _runs(hair_above[y1 - 1])
               if e - a >= 3]
    max_blind = 0.3 * b.head
    for y in range(y1, h):
        if not strands:
            break
        runs = _runs(near[y])
        alive = []
        for st in strands:
            lo, hi, dl, dr, blind = st
            over = [(a, e - 1) for a, e in runs if a <= hi + 1 and e - 1 >= lo - 1]
            if not over:
                continue
            a, r = min(o[0] for o in over), max(o[1] for o in over)
            left_seen, right_seen = a >= lo - 2, r <= hi + 2
            nlo = float(a) if left_seen else lo + dl
            nhi = float(r) if right_seen else hi + dr
            if left_seen:
                dl = 0.9 * dl + 0.1 * float(np.clip(nlo - lo, -1, 1))
            if right_seen:
                dr = 0.9 * dr + 0.1 * float(np.clip(nhi - hi, -1, 1))
            blind = 0 if (left_seen or right_seen) else blind + 1
            if blind > max_blind or nhi - nlo < 1:
                continue
            out[y, max(0, int(round(nlo))):min(w, int(round(nhi)) + 1)] = True
            alive.append([nlo, nhi, dl, dr, blind])
        strands = alive
    out[y1:] &= person[y1:] >= 0.5
    front = hair_above.copy()
    front[y1:] = out[y1:]
    # (above the neck's base too: hair beside the neck falls in front of a collar's back)
    return front


def _own_top(rgb: np.ndarray, person: np.ndarray, b: Body) -> np.ndarray | None:
    """The model's own top: the colour of the torso's middle (between armpits and hips),
    joined to it, on the person eroded by 2 px (its edge mixes with the backdrop). ``None``
    when that colour is the skin's (a bare torso: nothing to tell apart)."""
    h, w = person.shape
    y0 = int(b.armpit_y + 0.2 * (b.hip_y - b.armpit_y))
    y1 = int(b.armpit_y + 0.6 * (b.hip_y - b.armpit_y))
    x0, x1 = int(b.cx - 0.12 * b.shoulder_w), int(b.cx + 0.12 * b.shoulder_w)
    if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
        return None
    body = cv2.erode((person >= 0.5).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    inside = body[y0:y1, x0:x1]
    if inside.sum() < 20:
        return None
    top_c = _colour(rgb[y0:y1, x0:x1][inside])
    fy = int(b.top + 0.5 * b.head)
    face = rgb[max(fy - 2, 0):fy + 3, int(b.cx - 0.08 * b.head):int(b.cx + 0.08 * b.head) + 1]
    if face.size and np.linalg.norm((top_c - _colour(face)) * _HAIR_W) < 15:
        return None
    # nor when it is the backdrop's (a white top on a white sweep): the backdrop seen
    # between an arm and the body (a hole a cutout may fill) would be covered too
    border = np.concatenate([rgb[:4].reshape(-1, 3), rgb[:, :4].reshape(-1, 3),
                             rgb[:, -4:].reshape(-1, 3)])
    if np.linalg.norm((top_c - _colour(border)) * _HAIR_W) < 10:
        return None
    own = ((_lab_dist(_Lab(rgb, body), top_c, _HAIR_W) < 12) & body).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(own, connectivity=8)
    ids = np.unique(labels[y0:y1, x0:x1][inside & (own[y0:y1, x0:x1] > 0)])
    ids = ids[ids > 0]
    if not len(ids):
        return None
    return np.isin(labels, ids)


def _cover_own_top(part: np.ndarray, own: np.ndarray, band: float) -> np.ndarray:
    """The model's own top (``own``) showing in slivers beside the placed garment ``part``
    (RGBA, same box) — at the armpits, along the sides, at the shoulders, under the hem —
    within ``band`` px of the garment's edge is covered by the colour of the nearest
    garment pixel."""
    solid = part[..., 3] >= 128
    if not solid.any():
        return part
    dist, lbl = cv2.distanceTransformWithLabels((~solid).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    fill = own & ~solid & (dist <= band)
    if not fill.any():
        return part
    # each label names one garment pixel (a zero of the transform's input): its position
    zy, zx = np.nonzero(solid)
    lut = np.zeros((int(lbl.max()) + 1, 2), np.int32)
    lut[lbl[zy, zx]] = np.stack([zy, zx], 1)
    fy, fx = np.nonzero(fill)
    near = lut[lbl[fy, fx]]
    out = part.copy()
    out[fy, fx, :3] = part[near[:, 0], near[:, 1], :3]
    out[fy, fx, 3] = 255
    return out


def _hands_front(person: np.ndarray, b: Body, sleeve_end_y: float,
                 torso_half: Callable[[np.ndarray], np.ndarray],
                 own: np.ndarray | None = None) -> np.ndarray:
    """Forearms and hands below the sleeves: person pixels outside the torso's sides (not
    the model's own top there: that is covered, not an arm)."""
    h, w = person.shape
    yy, xx = np.ogrid[0:h, 0:w]
    out = (person >= 0.5) & (yy > sleeve_end_y) & (np.abs(xx - b.cx) > torso_half(yy))
    return out & ~own if own is not None else out


def _light(rgb_model: np.ndarray, person: np.ndarray, b: Body) -> np.ndarray:
    """The studio's light across the body: the model's torso brightness from side to side
    (a line fitted to the per-column median between the armpits and the hips, relative to its
    middle). The side light of a studio is what changes across a torso; up and down the
    torso the brightness is mostly the clothes' own (a dark base layer, trousers), so it is
    not taken."""
    h, w = person.shape
    y0, y1 = int(b.armpit_y), int(max(b.armpit_y + 2, b.hip_y))
    x0, x1 = max(int(b.torso_l), 0), min(int(b.torso_r), w)
    band = cv2.cvtColor(np.ascontiguousarray(rgb_model[y0:y1, x0:x1]),
                        cv2.COLOR_RGB2GRAY).astype(np.float32) if x1 > x0 and y1 > y0 else \
        np.zeros((0, 0), np.float32)
    inside = person[y0:y1, x0:x1] >= 0.5
    flat = np.ones((h, w), np.float32)
    if band.size == 0 or inside.sum() < 20:
        return flat
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # an all-outside column: NaN
            cols = np.nanmedian(np.where(inside, band, np.nan), axis=0)
    xs = np.arange(x0, x1, dtype=np.float64)
    ok = np.isfinite(cols)
    if ok.sum() < 5:
        return flat
    k, c = np.polyfit(xs[ok], cols[ok], 1)
    mid = k * b.cx + c
    ramp = (k * np.arange(w) + c) / max(mid, 1.0)
    return np.broadcast_to(np.clip(ramp, 0.85, 1.15).astype(np.float32)[None, :], (h, w))


def dress(model: Image.Image, garment: Image.Image, *, person_segmenter: Segmenter | None = None,
          garment_segmenter: Segmenter | None = None,
          inpaint: Callable[[Image.Image, np.ndarray], Image.Image] | None = None,
          light: float = 0.8, seam_px: float | None = None, warp: str = "tps",
          cover_top: bool = True, timings: dict[str, float] | None = None) -> Dressed:
    """The garment worn by the model (RGB at the model photo's size). See the module doc.
    ``timings``, when given, receives each stage's seconds (the benchmark's breakdown)."""
    import time

    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[name] = timings.get(name, 0.0) + now - clock[0]
        clock[0] = now

    seg = person_segmenter or PersonSegmenter("classical")
    model_rgb = np.asarray(model.convert("RGB"))
    h, w = model_rgb.shape[:2]
    person = seg.mask(model.convert("RGB"))
    lap("person_segmentation")
    hair_above = _hair_above_shoulders(model_rgb, person >= 0.5)
    body = find_body(person >= 0.5, hair_above)
    lap("body_keypoints")
    g = garment if garment.mode == "RGBA" and np.asarray(garment.getchannel("A")).min() < 250 \
        else cutout(garment.convert("RGB"), garment_segmenter or ClassicalSegmenter())
    lap("garment_cutout")
    g_rgb, g_a = split(g)
    gbox = alpha_bbox(g_a, 0.02)
    if gbox is not None:  # work on the garment's own box (a margin kept for the ring)
        mg = 8
        gx0, gy0 = max(gbox[0] - mg, 0), max(gbox[1] - mg, 0)
        gx1, gy1 = min(gbox[2] + mg, g_a.shape[1]), min(gbox[3] + mg, g_a.shape[0])
        g_rgb = np.ascontiguousarray(g_rgb[gy0:gy1, gx0:gx1])
        g_a = np.ascontiguousarray(g_a[gy0:gy1, gx0:gx1])
    gp = find_garment(g_a)
    g_rgb = decontaminate(g_rgb, g_a)
    tgt = _targets(gp, body)
    rgba = np.dstack([g_rgb, (g_a * 255 + 0.5).astype(np.uint8)])
    # Warp onto the garment's own box of the canvas only (a margin around its targets).
    pts = np.array(list(tgt.values()))
    pad = 0.15 * body.shoulder_w
    bx0, by0 = (np.maximum(np.floor(pts.min(0) - pad), 0)).astype(int)
    bx1, by1 = np.minimum(np.ceil(pts.max(0) + pad), [w, h]).astype(int)
    placed = np.zeros((h, w, 4), np.uint8)
    own = _own_top(model_rgb, person, body) if cover_top else None
    if bx1 > bx0 and by1 > by0:
        shifted = {k: (x - bx0, y - by0) for k, (x, y) in tgt.items()}
        box = (int(bx1 - bx0), int(by1 - by0))
        if warp == "tps":
            part = _warp_parts(rgba, gp, shifted, box)
        else:
            part = warp_pieces(rgba, _mesh(gp, shifted), box)
        if own is not None:
            sub = own[by0:by1, bx0:bx1].copy()
            sub[:max(0, int(tgt["dip"][1]) - by0)] = False      # not above the neckline
            part = _cover_own_top(part, sub, max(2.0, 0.04 * body.shoulder_w))
        placed[by0:by1, bx0:bx1] = part
    lap("garment_keypoints_warp")
    ga = placed[..., 3].astype(np.float32) / 255.0
    grgb = placed[..., :3].astype(np.float32)
    neckline_y = float(tgt["dip"][1])

    # occlusion
    yy = np.arange(h, dtype=np.float32)[:, None]
    sl_y = max(tgt.get("sleeve_ol", tgt["armpit_l"])[1], tgt.get("sleeve_or", tgt["armpit_r"])[1])
    sl_y = max(sl_y, tgt["armpit_l"][1])

    def torso_half(y: np.ndarray) -> np.ndarray:
        t = np.clip((y - tgt["armpit_l"][1]) / max(tgt["hem_c"][1] - tgt["armpit_l"][1], 1), 0, 1)
        top = 0.5 * (tgt["armpit_r"][0] - tgt["armpit_l"][0])
        bot = 0.5 * (tgt["hem_r"][0] - tgt["hem_l"][0])
        return top + (bot - top) * t

    front = _neck_front(body, person, neckline_y) | _hair_front(model_rgb, person, body, hair_above) | \
        _hands_front(person, body, sl_y, torso_half, own)
    # Everything from here on is zero off the placed garment: work on its box (+ the blurs'
    # reach), not on the whole photo.
    ys_, xs_ = np.nonzero(placed[..., 3])
    out = model_rgb.copy()
    ga_full = np.zeros((h, w), np.float32)
    if len(ys_):
        m_ = 8
        y0, y1 = max(int(ys_.min()) - m_, 0), min(int(ys_.max()) + m_ + 1, h)
        x0, x1 = max(int(xs_.min()) - m_, 0), min(int(xs_.max()) + m_ + 1, w)
        box_ = (slice(y0, y1), slice(x0, x1))
        ga = ga[box_]
        front_soft = cv2.GaussianBlur(front[box_].astype(np.float32), (0, 0), 0.8)
        ga = ga * (1 - front_soft)
        tol = max(1, int(round(0.008 * body.shoulder_w)))
        near = cv2.dilate((person[box_] >= 0.5).astype(np.uint8),
                          np.ones((2 * tol + 1,) * 2, np.uint8))
        near = cv2.GaussianBlur(near.astype(np.float32), (0, 0), max(0.6, tol / 2))
        ga = ga * np.clip(near * 1.2, 0, 1)
        ga = cv2.GaussianBlur(ga, (0, 0), 0.6)
        grgb = grgb[box_]
        # light
        if light > 0:
            shade = _light(model_rgb, person, body)[box_] ** light
            grgb = grgb * shade[..., None]
        border = np.concatenate([model_rgb[:4].reshape(-1, 3), model_rgb[-4:].reshape(-1, 3),
                                 model_rgb[:, :4].reshape(-1, 3), model_rgb[:, -4:].reshape(-1, 3)])
        cast = np.median(border, 0).astype(np.float32)
        cast = cast / max(float(cast.mean()), 1.0)
        grgb = grgb * (1 + 0.08 * (cast - 1))[None, None, :]
        blend = model_rgb[box_].astype(np.float32) * (1 - ga[..., None]) + grgb * ga[..., None]
        out[box_] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        ga_full[box_] = ga
    ga = ga_full
    del yy
    image = Image.fromarray(out, "RGB")
    lap("occlusion_light_composite")

    # the seam: a band along the garment's outline
    r = seam_px if seam_px is not None else max(2.0, 0.012 * body.shoulder_w)
    solid = (ga >= 0.5).astype(np.uint8)
    k = np.ones((2 * int(r) + 1,) * 2, np.uint8)
    seam = (cv2.dilate(solid, k) - cv2.erode(solid, k)).astype(bool)
    if inpaint is not None and seam.any():
        painted = np.asarray(inpaint(image, seam.astype(np.float32)).convert("RGB")
                             .resize((w, h), Image.Resampling.BILINEAR)).astype(np.float32)
        soft = cv2.GaussianBlur(seam.astype(np.float32), (0, 0), max(1.0, r / 2))[..., None]
        soft = soft * seam[..., None] + soft * 0.0
        mix = np.asarray(image, np.float32) * (1 - 0.6 * soft) + painted * 0.6 * soft
        image = Image.fromarray(np.clip(mix + 0.5, 0, 255).astype(np.uint8), "RGB")
    lap("seam")
    return Dressed(image, ga, body, neckline_y, seam, getattr(seg, "name", "classical"))
