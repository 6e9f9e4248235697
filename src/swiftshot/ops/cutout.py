"""Cutout: a soft alpha mask of the product in a seller's photo.

``Segmenter`` is the pluggable part: ``mask(image) -> float32 HxW in 0..1``.

``ClassicalSegmenter`` (the default, no weights) is built for what sellers actually shoot: one
product on a backdrop (white sweep, coloured paper, a gradient, a textured board). It works on a
small copy, where the eye cannot tell the difference, and goes back to full resolution only to
refine the edge:

1. **Backdrop model.** A smooth surface (quadratic in x, y per channel) fitted to the border of
   the photo with outliers rejected: it follows a sweep's fall-off and vignetting.
2. **Evidence.** Each pixel is compared with the backdrop predicted under it: its *chroma*
   distance (the part of its colour a brightness change of the backdrop cannot explain), how
   much brighter it is, how much darker (as a ratio), and how much it differs from its
   neighbours (edges and texture). A cast shadow is the backdrop made darker with the same
   chroma and soft edges, so it lights none of these: shadows stay background.
3. **Regions.** Evidence is closed into regions; small specks are dropped. Holes inside the
   product (a mug's handle) stay background when they look like the backdrop; holes that are
   neither backdrop nor shadow (a white face of a white product) are filled. A hole whose top
   is plain backdrop and which darkens evenly downward (the backdrop under sunglasses' bridge,
   in their own shadow) is given back too (``_open_shaded_holes``).
4. **Contact shadow.** The shadow under the base is dark and sharp-edged enough to join the
   product; each column is walked up from the bottom and what keeps the backdrop's chroma
   while darkening towards the contact line is given back (``_peel_base_shadow``); so is a
   band of shadow under a dark part held above the floor, darkest at its foot
   (``_peel_shadow_under_dark``).
5. **Edge.** Only a band a few work pixels wide around the region's edge is computed at full
   resolution (inside is 1, outside 0). There, each pixel is matted against the backdrop next
   to it: it is α·F + (1-α)·B with B the nearby backdrop (its shadow included) and F the
   product colour next to it, so α is its position on the segment B→F, measured across B's
   colour where F's colour differs (a shadow, a scaling of B, cannot move it there). Where F
   and B are too alike to tell (white on white), a guided filter (He et al.) of the work mask
   stands in.

A photo that already has an alpha channel keeps it.

``OnnxSegmenter`` runs rembg's model files (u2net, isnet-general-use, birefnet-general ...) with
onnxruntime, from a local folder only.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np
from PIL import Image

from swiftshot.ops.pixels import rgb_array


@runtime_checkable
class Segmenter(Protocol):
    name: str

    def mask(self, image: Image.Image) -> np.ndarray:
        """float32 HxW alpha in 0..1 (1 = product) at the image's size."""


class FakeSegmenter:
    """In-memory fake for tests above the ops layer: a centred ellipse, or a given mask."""

    name = "fake"

    def __init__(self, fixed: np.ndarray | None = None) -> None:
        self.fixed = fixed
        self.calls = 0

    def mask(self, image: Image.Image) -> np.ndarray:
        self.calls += 1
        if self.fixed is not None:
            return self.fixed.astype(np.float32)
        w, h = image.size
        m = np.zeros((h, w), np.float32)
        cv2.ellipse(m, (w // 2, h // 2), (w // 4, h // 3), 0, 0, 360, 1.0, -1)
        return m


# -- the classical segmenter -----------------------------------------------------------------

@dataclass(frozen=True)
class ClassicalParams:
    work_side: int = 384
    """Long side of the copy the regions are found on, to the nearest integer factor (320 px
    at 640², 400 at 800², 333 at 1000², 375 at 1500²)."""
    exact_work_side: int | None = None
    """When set, the work copy's long side is exactly this whatever the photo's size, so the
    decisions made in its pixels do not change with the upload's size (tenth pass: 320 fixed
    textured 17 at 1500² and 7010 at 800², but moved 3 of 60 tuning cases at 800² down by
    more than 0.005 — the 800² photos' copy was 400 px; not the default, see docs/OPS.md)."""
    border: float = 0.04
    """Width of the border band (fraction of the short side) the backdrop is learnt from."""
    chroma_sigmas: float = 5.0
    """Chroma distance, in backdrop noise units, that counts as product."""
    min_chroma: float = 7.0
    """...and at least this many levels (JPEG colour noise on a flat backdrop)."""
    tint_frac: float = 0.45
    """A 5×5 mean chroma distance over this fraction of the chroma threshold is product."""
    shadow_floor: float = 0.42
    """Darker than this fraction of the backdrop is product, even with the same chroma."""
    bright_sigmas: float = 5.0
    """Brighter than the backdrop by this many noise units is product (no shadow brightens)."""
    edge_sigmas: float = 6.0
    """Local contrast (in noise units) that marks an edge or texture of the product."""
    min_region: float = 0.002
    """Regions smaller than this fraction of the frame are specks, dropped."""
    eps: float = 2e-4
    """Guided filter regularisation (on 0..1 intensities): larger = softer edge."""
    peel_reach: float = 0.08
    """How far up from the mask's bottom (fraction of its height) a contact shadow may reach."""
    peel_step: float = 0.7
    """Walking up a shadow, a pixel darker than this fraction of the one under it is product."""
    dark_is_product: bool = True
    """The edge matte keeps at least 1 - kb of a pixel at kb of the backdrop's brightness when
    that is under ``shadow_floor`` (no shadow is that dark: a glass bottle's dark walls)."""
    peel_chroma: float = 1.6
    """...and so is one with this many times the product chroma threshold (JPEG's colour
    ringing next to a saturated product reaches past the threshold itself)."""


def _border_sel(h: int, w: int, band: int, sides: tuple[bool, bool, bool, bool] = (
        True, True, True, True)) -> np.ndarray:
    """The border band (top, bottom, left, right sides as chosen)."""
    sel = np.zeros((h, w), bool)
    if sides[0]:
        sel[:band] = True
    if sides[1]:
        sel[-band:] = True
    if sides[2]:
        sel[:, :band] = True
    if sides[3]:
        sel[:, -band:] = True
    return sel


def _max3(x: np.ndarray) -> np.ndarray:
    """``x.max(-1)`` of an (..., 3) array, the same values: numpy reduces a last axis of 3
    several times slower than two element-wise maxima (the border residuals, 2.2 -> 0.6 ms
    at a 400² work copy)."""
    if x.shape[-1] != 3:
        return x.max(-1)
    return np.maximum(np.maximum(x[..., 0], x[..., 1]), x[..., 2])


def _fit_backdrop(img: np.ndarray, band: int) -> tuple[np.ndarray, float, np.ndarray]:
    """Quadratic surface per channel fitted to the border band.

    Returns (backdrop at img's size, noise sigma, 6×3 coefficients over coordinates normalised
    to -0.5..0.5, so the same surface can be evaluated at any resolution)."""
    h, w, _ = img.shape
    full = _border_sel(h, w, band)
    ys, xs = np.nonzero(full)
    step = max(1, len(ys) // 6000)
    ys, xs = ys[::step], xs[::step]
    design = _design(xs / w - 0.5, ys / h - 0.5)
    vals = img[ys, xs].astype(np.float32)
    coef, keep = _robust_fit(design, vals)
    sigma = _fit_noise((vals - design @ coef)[keep])
    coef, sigma, covered = _distrust_covered_side(ys, xs, h, w, band, design, vals, coef, sigma,
                                                  img)
    # The surface is smooth: evaluate it on a coarse grid and let resize interpolate.
    gh, gw = min(h, 48), min(w, 48)
    gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    grid = _design((gx + 0.5) / gw - 0.5, (gy + 0.5) / gh - 0.5)
    coarse = (grid @ coef).astype(np.float32)
    bg = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
    if covered is not None:
        bg = _profile_correction(img, bg, band, covered, max(sigma, 0.8))
    return bg, max(sigma, 0.8), coef.astype(np.float32)


def _profile_correction(img: np.ndarray, bg: np.ndarray, band: int, covered: int,
                        sigma: float) -> np.ndarray:
    """``bg`` plus what the two strips across a covered side say the quadratic misses, row by
    row (bottom or top covered: the left and right strips) or column by column (a side
    covered: the top and bottom bands).

    Fitted without most of one side, the quadratic extrapolates towards it, and a sweep that
    levels off at the floor was 13-18 levels off there: the backdrop beside the covered
    stretch was "brighter than the backdrop", kept as product. Both strips run up to the
    covered side and see how the backdrop really changes towards it; where they agree (and
    are not product: under 30 levels off), their mean residual is added across the frame."""
    if covered in (0, 1):
        a = np.median(img[:, :band] - bg[:, :band], axis=1)
        b = np.median(img[:, -band:] - bg[:, -band:], axis=1)
    else:
        a = np.median(img[:band] - bg[:band], axis=0)
        b = np.median(img[-band:] - bg[-band:], axis=0)
    ok = ((_max3(np.abs(a)) < _COVERED) & (_max3(np.abs(b)) < _COVERED)
          & (_max3(np.abs(a - b)) <= max(6.0, 4.0 * sigma))).astype(np.float32)
    corr = (a + b) * 0.5 * ok[:, None]
    num = _smooth1d(corr, 2.0)
    den = _smooth1d(ok[:, None], 2.0)
    corr = np.where(den > 0.2, num / np.maximum(den, 1e-3), 0.0).astype(np.float32)
    if covered in (0, 1):
        return bg + corr[:, None, :]
    return bg + corr[None, :, :]


def _sweep_profile(img: np.ndarray, bg: np.ndarray, band: int, sigma: float,
                   bright_sigmas: float = 5.0) -> np.ndarray:
    """The single surface, corrected row by row (``_profile_correction`` from the left and
    right strips) where the quadratic misses a sweep's fall-off by most of the "brighter"
    evidence threshold (``_SWEEP_SHARE`` of max(6, 5 σ)): a sweep of gamma 0.73 was 8 levels
    brighter than the quadratic just under the top band, and that band of "product" joined a
    chrome bottle's cap (glossy 23: IoU 0.920). Smaller misses are left alone: they light no
    evidence, and a correction of 3 levels from strips that see a product's shadow or a white
    product's edge cost white on white 21 0.965 -> 0.858."""
    out = _profile_correction(img, bg, band, 0, sigma)
    if float(np.abs(out - bg).max()) < _SWEEP_SHARE * max(6.0, bright_sigmas * sigma):
        return bg
    return out


_SWEEP_SHARE = 0.75


def _smooth1d(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of an n×c array along its first axis (zero outside). The kernel is
    cut to the array's length: ``np.convolve(mode="same")`` returns the longer of the two, and
    a thin photo's work copy (32:1, 12 px across) broke the broadcast against the backdrop."""
    r = min(int(3 * sigma + 0.5), (len(x) - 1) // 2)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    return np.stack([np.convolve(x[:, i], k, mode="same") for i in range(x.shape[1])], 1)


def _fit_noise(res: np.ndarray) -> float:
    """Robust noise (MAD × 1.4826, channels pooled) of a fit's kept residuals."""
    return float(np.median(np.abs(res - np.median(res, 0)))) * 1.4826


def _distrust_covered_side(ys: np.ndarray, xs: np.ndarray, h: int, w: int, band: int,
                           design: np.ndarray, vals: np.ndarray, coef: np.ndarray,
                           sigma: float, img: np.ndarray | None = None
                           ) -> tuple[np.ndarray, float, int | None]:
    """The surface fitted without one side of the border, where a product covers most of
    that side and the full fit was bent by it. Returns (coefficients, noise, that side's
    index: top, bottom, left, right; None where the full fit is kept).

    A product cropped by the frame can cover most of one side's band (a sneaker's cream sole
    along the bottom edge), and where the backdrop changes steeply towards that side (a sweep
    darkening to the floor) the product's colour is no farther from the fit's start than the
    backdrop's own far end: the robust fit then took the product as the backdrop there and
    bent away from the backdrop of the other sides (the side strips' lower halves 20-95
    levels off; IoU 0.68). The other three sides still span the frame (the side strips run
    from top to bottom), so a fit without one side is well posed. It is used when (1) most of
    the side it left out is far off it (a product covers that side: over 40 % of its pixels
    more than 30 levels off), and (2) it explains clearly more of the three sides it was
    fitted on than the full fit does (10 % of them; both judged at one tolerance, from the
    smaller noise: the bent fit's residuals inflate its own). A product cropped at a side on
    a backdrop the full fit follows (the common case) fails (2) and changes nothing."""
    full_res = _max3(np.abs(vals - design @ coef))
    sides = (ys < band, ys >= h - band, xs < band, xs >= w - band)
    # The candidates are judged on every 4th sample (a robust fit costs ~5 ms CPU on all
    # ~6000; on a quarter the verdicts were the same on the 950 tuning cases).
    sub = np.zeros(len(ys), bool)
    sub[::4] = True
    found = []
    for i, side in enumerate(sides):
        use = ~side
        # Any tolerance is at least 6 levels: where the full fit misses less than the gain
        # asked of the other sides at 6, no fit can win (most photos; no fit is made).
        if use.sum() < 60 or float((full_res[use] >= 6.0).mean()) < _SIDE_GAIN:
            continue
        c, k = _robust_fit(design[use & sub], vals[use & sub])
        res = _max3(np.abs(vals - design @ c))
        off = float((res[side] > _COVERED).mean())
        # A product covering part of a side (under 40 %) bends the full fit too where the
        # backdrop changes steeply (a cream label on a sweep's dark floor): left out, the
        # side must then be explained better as well, not only the three fitted on.
        partial = _PARTIAL_COVER <= off < 0.4 and img is not None
        if off < 0.4 and not partial:
            continue
        # A side strip (or a partly covered side) with no edge along it is backdrop: nothing
        # covers it.
        if img is not None and (partial or i >= 2) and not _edge_along(img, band, i):
            continue
        s = _fit_noise((vals[use & sub] - design[use & sub] @ c)[k])
        tol = max(6.0, 4.0 * max(min(s, sigma), 0.8))
        judged = slice(None) if partial else use
        gain = float((res[judged] < tol).mean()) - float((full_res[judged] < tol).mean())
        if gain >= _SIDE_GAIN:
            found.append((res, c, s, i))
    if not found:
        return coef, sigma, None
    return _best_side_fit(found, sigma)


def _best_side_fit(found: list, sigma: float) -> tuple[np.ndarray, float, int]:
    """Of the fits without one side that each beat the full fit, the one that explains most
    of the *whole* border, all judged at one tolerance (from the smallest noise). Each
    candidate's gain is measured on its own sides (three, or all four for a partly covered
    one), so gains are not comparable: a bottle cropped at the bottom of a steep sweep (its
    cream label on 30 % of the dark floor's band) had the fit without the bottom explain the
    border far better (69 %), yet the fit without the left side won on its own three sides:
    bent to the label, it explained 6 % of the bottom band it was fitted on and none of the
    left strip, which only carried the product's cast shadow (framing 5193 at 640²: the
    backdrop's upper half kept, IoU 0.211). A side a product really covers is unexplained
    by every candidate alike, so the whole border still picks the fit without it."""
    noise = min(min(f[2] for f in found), sigma)
    tol = max(6.0, 4.0 * max(noise, 0.8))
    res, c, s, i = max(found, key=lambda f: float((f[0] < tol).mean()))
    return c, s, i


def _edge_along(img: np.ndarray, band: int, side: int) -> bool:
    """Whether a side's band (top, bottom, left, right) looks covered by something: it steps
    somewhere along its length by a clear edge (``_step_rows``' size, 14 levels as a
    horizon's: a product covering part of a side begins somewhere along it), or, with no
    edge, it is not the opposite side's colour (median, position by position, within
    ``_COVERED``: a product covering the side end to end, a cream strip down a thin photo's
    right side). A side that changes only smoothly, as the opposite one does, is backdrop
    however far a fit made without it lands from it: a bottle cropped at the bottom of a
    purple sweep (gamma 0.9) bent the fit without the left side 200 levels off that side,
    which was then taken as covered, and the fit kept 60 % of the frame (framing 9094 at
    640²: IoU 0.205)."""
    strips = (img[:band], img[-band:], img[:, :band], img[:, -band:])
    axis = 0 if side < 2 else 1
    prof = np.median(strips[side], axis=axis)
    # Past the corners' bands: the sides beside it are backdrop there, or product too.
    inner = prof[band:-band] if len(prof) > 4 * band else prof
    half = max(3, len(inner) // 48)
    if len(inner) < 2 * half + 4 or _step_rows(inner, half)[0][1] >= 14.0:
        return True
    other = np.median(strips[side ^ 1], axis=axis)
    return float(np.median(_max3(np.abs(prof - other)))) > _COVERED


_SIDE_GAIN = 0.1
_PARTIAL_COVER = 0.15
"""Share of a side's band off a fit made without it (> ``_COVERED``) from which a product
covering part of it is looked for (``_distrust_covered_side``)."""
"""Share of the other three sides a fit without one side must explain over the full fit's."""
_COVERED = 30.0
"""Levels off the fit without it at which a pixel of the side left out is taken as product
(and, in ``_profile_correction``, a strip's residual is not trusted)."""


def _design(xn: np.ndarray, yn: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(xn), xn, yn, xn * xn, xn * yn, yn * yn], -1).astype(np.float32)


def _start_colour(vals: np.ndarray) -> np.ndarray:
    """Where the robust fit starts: the median colour of the border's most common colour
    (bins of 24 levels, with their neighbours), not of all of it. A product covering
    nearly half of a plane's border (a box cropped at the side, standing on the table) pulls
    the plain median towards its own colour, and the fit started half on the product."""
    q = np.clip(vals // 24, 0, 10).astype(np.int32)
    key = (q[:, 0] * 11 + q[:, 1]) * 11 + q[:, 2]
    counts = np.bincount(key, minlength=11 ** 3).reshape(11, 11, 11).astype(np.float32)
    # Neighbouring bins count too: a gradient or the sweep's fall-off spreads over a few.
    pad = np.pad(counts, 1)
    smooth = sum(pad[i:i + 11, j:j + 11, k:k + 11]
                 for i in range(3) for j in range(3) for k in range(3))
    best = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    near = (np.abs(q - np.array(best)) <= 1).all(1)
    return np.median(vals[near], 0) if near.sum() >= 10 else np.median(vals, 0)


# Ridge towards a prior surface (the table of two planes, held to the wall's shape): where
# the border seen pins the terms down it changes the fit little; where it does not (a table
# seen only in the two side strips: x² is then the constant; or only in one strip and a piece
# of the bottom band: the x terms are then guessed), it keeps the prior's shape instead of
# letting a near-singular solve bend the surface through the middle of the frame.
_RIDGE = np.diag([0.0, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])


def _robust_fit(design: np.ndarray, vals: np.ndarray, start: np.ndarray | None = None,
                prior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ``vals`` (N×3) on ``design`` (N×6), robust to a product filling part
    of the border (cropped framing: a whole side can be product): started on the 70 % of the
    pixels nearest the border's most common colour (or ``start``, a colour known to be the
    backdrop's: then on those within 30 levels of it, at least the nearest 30 %), re-fit on
    the best-fitting 85 %, then on the pixels within 3 robust sigmas of the surface. The
    non-constant terms are held towards ``prior``'s (6×3) where the samples do not pin them
    down. Returns (6×3 coefficients, inlier mask)."""
    target = np.zeros((6, 3)) if prior is None else prior.astype(np.float64)
    ridge = np.zeros((6, 6)) if prior is None else _RIDGE

    def solve(keep: np.ndarray) -> np.ndarray:
        d = design[keep].astype(np.float64)
        lam = ridge * float(keep.sum())
        return np.linalg.solve(d.T @ d + lam + 1e-6 * np.eye(6),
                               d.T @ vals[keep] + lam @ target)

    if start is None:
        dist = _max3(np.abs(vals - _start_colour(vals)))
        keep = dist <= np.quantile(dist, 0.7)
    else:
        # A plane's colour known from elsewhere (the step at the horizon): the product may
        # cover most of this plane's border (a bag cropped at the bottom, standing on the
        # table), so the nearest 70 % would take it in.
        dist = _max3(np.abs(vals - start))
        keep = (dist <= np.quantile(dist, 0.7)) & (
            dist <= max(30.0, float(np.quantile(dist, 0.3))))
    coef = solve(keep)
    res = _max3(np.abs(vals - design @ coef))
    # The best-fitting 85 %, but not what lies far outside the first fit's own noise (a
    # product covering nearly half of the border would be in the 85 %).
    new_keep = (res <= np.quantile(res, 0.85)) & (
        res <= max(3.0, 4.0 * 1.4826 * float(np.median(res[keep]))))
    keep = new_keep if new_keep.sum() >= 0.25 * len(keep) else res <= np.quantile(res, 0.85)
    for _ in range(3):
        coef = solve(keep)
        res = _max3(np.abs(vals - design @ coef))
        # The noise from the median of all residuals (robust while most of the border is
        # backdrop; the trimmed set's own median would shrink the cut at every step).
        # ...unless nearly half of it is product (a box cropped at a side, standing on the
        # table: then the median residual is the product's, and the cut let it in): the
        # kept set's own median, with room to grow, caps it.
        med = min(float(np.median(res)), 1.5 * float(np.median(res[keep])))
        cut = max(3.0, 3.0 * med * 1.4826)
        new_keep = res < cut
        if new_keep.sum() < 0.3 * len(keep) or (new_keep == keep).all():
            break
        keep = new_keep
    return coef.astype(np.float32), keep


@dataclass(frozen=True)
class Horizon:
    """Where a table top meets the wall behind it, on the work copy."""
    y_left: float
    y_right: float
    width: float
    """Rows the blend from wall to table takes (the wall is usually out of focus)."""
    one_side: bool = False
    """Seen in one side strip only (the product covers the other)."""
    wall: np.ndarray | None = None
    """Colours just above and below the step in the side strip(s): where the wall's and the
    table's fits start (a product may cover most of the table's border)."""
    table: np.ndarray | None = None
    strength: float = 0.0
    """The weaker side's step (levels; 0 for one side): a step of several times ``strong``
    in both strips at one height is a table's edge, not a product's."""

    def line(self, xs: np.ndarray, w: int) -> np.ndarray:
        return self.y_left + (self.y_right - self.y_left) * (xs + 0.5) / w


def _step_rows(prof: np.ndarray, half: int, n: int = 1) -> list:
    """(row, size, 10-90 width, colour above, colour below) of the strongest step in a row
    profile (h×3), and of the next strongest ones, up to ``n``, each at least three windows
    from the stronger ones."""
    h = len(prof)
    ys = np.arange(half + 1, h - half)
    if not len(ys):
        return [(0, 0.0, 1.0, np.zeros(3), np.zeros(3))]
    # Medians of the rows either side, not means: a thin dark seam of a wood table (a line,
    # not a step) moves a mean as much as a faint horizon does.
    win = np.lib.stride_tricks.sliding_window_view(prof, half, axis=0)  # (h-half+1, 3, half)
    med = np.median(win, axis=2)
    above = med[ys - 1 - half]
    below = med[ys + 1]
    score = np.sqrt(((below - above) ** 2).sum(1))
    # Ranked with the change of colour counted again: a textured table's grain, seams and
    # blotches scale its brightness (the step runs along the colour's own axis), a wall
    # meeting a table changes the colour as well. On a 375 px copy of a 1500² photo, three
    # brightness steps of white-washed wood (21 levels) out-ranked the horizon under a beige
    # wall (17 levels, 16 of them colour) in both strips, and a step of the grain 20 rows
    # under it was taken for the horizon: a strip of the table kept (textured 17, IoU 0.79).
    # Only the ranking changes; a step's size (``strong``, the pair's strength) is as before.
    k = (above * below).sum(1) / np.maximum((above * above).sum(1), 1.0)
    hue = np.sqrt(((below - above * k[:, None]) ** 2).sum(1))
    rank = score + _HUE_RANK * hue
    out = []
    free = np.ones(len(score), bool)
    for _ in range(n):
        if not free.any():
            break
        i = int(np.argmax(np.where(free, rank, -1.0)))
        out.append(_one_step(prof, half, ys, np.where(free, score, 0.0), above, below, i))
        free[max(0, i - 3 * half):i + 3 * half + 1] = False
    return out


_HUE_RANK = 1.0
"""Weight of a step's change of colour (beside its size) when a side strip's steps are
ranked (``_step_rows``)."""


def _one_step(prof: np.ndarray, half: int, ys: np.ndarray, score: np.ndarray,
              above: np.ndarray, below: np.ndarray, i: int):
    """``_step_rows``' figures of the step whose score peaks at index ``i``."""
    h = len(prof)
    # Medians hold the full step over a few rows around it: the middle of that plateau.
    lo_i = hi_i = i
    while hi_i + 1 < len(score) and score[hi_i + 1] >= 0.9 * score[i]:
        hi_i += 1
    while lo_i > 0 and score[lo_i - 1] >= 0.9 * score[i]:
        lo_i -= 1
    i = (lo_i + hi_i + 1) // 2
    y = int(ys[i])
    a, b = above[i], below[i]
    d = b - a
    lo, hi = max(0, y - 3 * half), min(h, y + 3 * half + 1)
    t = ((prof[lo:hi] - a) @ d) / max(float(d @ d), 1e-6)
    # The blend's width: the rows around the step still between 10 % and 90 % of it.
    mid = (t > 0.1) & (t < 0.9)
    c0 = y - lo
    top = c0
    while top > 0 and mid[top - 1]:
        top -= 1
    bot = c0
    while bot < len(mid) - 1 and mid[bot + 1]:
        bot += 1
    width = float(bot - top + 1)
    # The line itself to a fraction of a row: where the profile crosses half-way (the
    # evidence along a horizon placed a row off printed as a line of "product").
    yf = float(y)
    k = np.nonzero((t[:-1] < 0.5) & (t[1:] >= 0.5))[0]
    if len(k):
        k = int(k[np.argmin(np.abs(k - c0))])
        if abs(k - c0) <= half:
            yf = lo + k + (0.5 - t[k]) / max(float(t[k + 1] - t[k]), 1e-6)
    return yf, float(score[i]), width, a, b


def _find_horizon(img: np.ndarray, band: int) -> list[Horizon]:
    """Candidate horizons: a step in both side strips of the photo at about the same height
    between about the same two colours (a table meeting a wall), and a step in one strip
    alone whose upper colour is the top band's (the wall runs on behind the product; the
    other strip is covered by a product cropped at that side, and the bottom band may be
    too). Which one, if any, is used is decided by how much of the border each explains
    (``_fit_two_planes``): a product's own top edge in a covered strip is a step too."""
    h, w, _ = img.shape
    half = max(3, h // 48)
    left = np.median(img[:, :band], axis=1)
    right = np.median(img[:, w - band:], axis=1)
    steps_l = _step_rows(left, half, 3)
    steps_r = _step_rows(right, half, 3)
    yl, sl, wl, al, bl = steps_l[0]
    yr, sr, wr, ar, br = steps_r[0]
    strong = 14.0
    out: list[Horizon] = []

    def pair(a, b, weak: float = strong, shaded: bool = False) -> Horizon | None:
        # Both sides at about the same height, between about the same two colours: a product
        # touching one side (cropped framing) makes a step there too.
        (y1, s1, w1, a1, b1), (y2, s2, w2, a2, b2) = a, b
        if (max(s1, s2) >= strong and min(s1, s2) >= weak and abs(y1 - y2) <= 0.1 * h
                and np.abs(a1 - a2).max() <= 45
                and (np.abs(b1 - b2).max() <= 45 or shaded and _same_table(b1, b2))):
            return Horizon(float(y1), float(y2), max(1.0, (w1 + w2) / 2),
                           wall=(a1 + a2) / 2, table=(b1 + b2) / 2,
                           strength=float(min(s1, s2)))
        return None

    both = pair(steps_l[0], steps_r[0])
    if both is None:
        # The strongest steps, one strip's table in the product's cast shadow: a pair when
        # it is one line across the frame (a box's base step in one strip is darker than
        # the table in the other too: framing 10273).
        both = pair(steps_l[0], steps_r[0], shaded=True)
        if both is not None and not _shaded_traced(img, both, steps_l[0], steps_r[0]):
            both = None
    if both is None:
        # The strongest steps of the two strips disagree: a wood table's seam or a product's
        # edge may out-step a faint horizon in one strip (more often on a finer or a less
        # noisy work copy), or the light falls so that wall and table are nearly one tone at
        # one side (textured 8005 at 800²: 11 levels left, 28 right). Then the strongest
        # pair of steps that agree, the weaker at least half ``strong``, is a candidate too;
        # the border decides, as for any other.
        pairs = [q for a in steps_l for b in steps_r
                 if (q := pair(a, b, 0.5 * strong)) is not None]
        out.extend(q for q in pairs if _pair_traced(img, q))
        both = None
    if both is not None and not _pair_traced(img, both):
        both = None
    if both is not None:
        out.append(both)
    top = np.median(img[:band].reshape(-1, 3), axis=0)
    for (y, st, wd, above, below), other in (((yl, sl, wl, al, bl), right),
                                             ((yr, sr, wr, ar, br), left)):
        if (st >= strong and 2 * band < y < h - 2 * band and np.abs(above - top).max() <= 20
                and not _wall_runs_on(other, y, half, above, below)):
            yl_, yr_ = _traced_tilt(img, float(y), above, below, side=0 if other is right else 1)
            out.append(Horizon(yl_, yr_, max(1.0, wd), one_side=True,
                               wall=above, table=below))
    return out


def _same_table(b1: np.ndarray, b2: np.ndarray) -> bool:
    """Whether two side strips' colours under a step are one table: within 45 levels, or the
    darker one the lighter one's colour in shadow (scaled by 0.55 or more, off its line
    through black by under ``_SHADED_OFF`` levels). The product's cast shadow may lie over
    one strip's table: a light stone table, 238 levels in the right strip, 186 in the left
    one under a mug's shadow (52 apart), was not paired, a grain step of the table was, and
    one surface over wall and table kept the table's light blotches as product (textured
    14042 at 640²: IoU 0.37). Asked of the two strips' strongest steps alone, and kept only
    when they trace as one line (``_pair_traced``): a box's base step is darker than the
    table beside it too."""
    if np.abs(b1 - b2).max() <= 45:
        return True
    lo, hi = (b1, b2) if float(b1.sum()) < float(b2.sum()) else (b2, b1)
    k = float(lo @ hi) / max(float(hi @ hi), 1.0)
    off = float(np.sqrt(((lo - k * hi) ** 2).sum()))
    return 0.55 <= k and off <= _SHADED_OFF


_SHADED_OFF = 8.0


def _traced_tilt(img: np.ndarray, y: float, wall: np.ndarray, table: np.ndarray,
                 side: int) -> tuple[float, float]:
    """(left, right) heights of a horizon seen in one side strip only (``side``: 0 left, 1
    right) at ``y``: level, unless the step can be followed across the frame. A horizon seen
    in one strip was taken as level, and a tilted one (3 % of the height across the frame)
    then ran 9 px off the model at the other side, where the wall-to-table step was kept as
    a line of product across the frame (two plane 10351, a bottle whose cast shadow darkens
    the table at the left strip so that the two strips do not pair: 0.915 at 640², said
    high). Each column's step is the row, within ``_TRACE_REACH`` of the height of the
    frame either way, where the brightness changes most in the wall-to-table direction; a
    line fitted to the columns where that step is at least half the strip's is used when it
    meets the strip's own height within 2 px and is found in over a third of the columns."""
    found = _trace(img, y, wall, table)
    if found is None:
        return y, y
    left, right = found
    at_side = left if side == 0 else right
    if abs(at_side - y) > 2.0 or abs(right - left) > _TRACE_TILT * img.shape[0]:
        return y, y
    return left, right


def _trace(img: np.ndarray, y: float, wall: np.ndarray, table: np.ndarray
           ) -> tuple[float, float] | None:
    """``_traced_tilt``'s line (left, right), or None where the step is not followed."""
    h, w, _ = img.shape
    reach = max(4, round(_TRACE_REACH * h))
    y0, y1 = max(int(y) - reach, 1), min(int(y) + reach + 1, h - 1)
    if y1 - y0 < 6:
        return None
    lum = cv2.blur(cv2.transform(img[y0 - 1:y1 + 1], _MEAN3), (5, 1))
    d = (lum[2:] - lum[:-2]) * 0.5
    sign = 1.0 if float(np.mean(table)) >= float(np.mean(wall)) else -1.0
    d = d * sign
    rows = np.argmax(d, axis=0)
    size = d[rows, np.arange(w)]
    full = abs(float(np.mean(table)) - float(np.mean(wall)))
    ok = size >= 0.25 * full  # half the step, spread over about two rows of the difference
    if ok.mean() < 1 / 3:
        return None
    xs = (np.arange(w) + 0.5)[ok]
    ys = (rows + y0).astype(np.float64)[ok]
    keep = np.ones(len(xs), bool)
    for _ in range(3):
        a, b = np.polyfit(xs[keep], ys[keep], 1)
        keep = np.abs(ys - (a * xs + b)) <= 2.0
        if keep.sum() < len(xs) / 3:
            return None
    return float(b), float(a * w + b)


def _pair_traced(img: np.ndarray, hz: Horizon) -> bool:
    """Whether a horizon paired from both strips is one line across the frame: traced from
    its left end (``_trace``), the step must reach the right strip within ``_PAIR_OFF`` of
    the height of the pair's right end (or not be followed at all). A box standing at the
    right, its base's step in the right strip 30 px under the horizon's, paired with the
    left strip's horizon into a line that crossed the real one, and a wedge of the wall's
    step was kept as product (framing 10273: 0.822 at 640²)."""
    found = _trace(img, hz.y_left, hz.wall, hz.table)
    if found is None or abs(found[0] - hz.y_left) > 2.0:
        return True
    return abs(found[1] - hz.y_right) <= _PAIR_OFF * img.shape[0]


def _shaded_traced(img: np.ndarray, hz: Horizon, left: tuple, right: tuple) -> bool:
    """``_pair_traced`` for a pair whose tables are one colour only in shadow (``_same_table``):
    traced from each end with that strip's own wall and table (the pair's mean colours, half
    lit and half shaded, need not be followed at all), neither line may miss the other end
    by over ``_PAIR_OFF`` of the height. Framing 10273's box base in the right strip, darker
    than the table in the left one, paired so: the left strip's own step, traced, rises to
    13 px above it at the right."""
    h, w = img.shape[:2]
    for y, (_, _, _, a, b), end in ((hz.y_left, left, 0), (hz.y_right, right, 1)):
        found = _trace(img, y, a, b)
        if found is None or abs(found[end] - y) > 2.0:
            continue
        other = hz.y_right if end == 0 else hz.y_left
        if abs(found[1 - end] - other) > _PAIR_OFF * h:
            return False
    return True


_PAIR_OFF = 0.03
_TRACE_REACH = 0.04
_TRACE_TILT = 0.06
"""``_traced_tilt``: the step is looked for within 4 % of the height of the frame of the
strip's, and a traced horizon may rise or fall by 6 % of it across the frame at most."""


def _wall_runs_on(other: np.ndarray, y: float, half: int, wall: np.ndarray,
                  table: np.ndarray) -> bool:
    """Whether the other side strip (a row profile) shows the wall going on under a step seen
    in one strip alone: then that step is not a table's edge but the top of a product cropped
    at that side. A table seen in one strip is the other strip's too unless a product covers
    it there; a horizon tilts by a few rows across the frame, less than the rows looked at
    (2-4 windows under the step). A mug cropped at the left edge of a pink sweep: its rim's
    step in the left strip was taken as a horizon with the mug as the "table", and the
    table's surface, bent through the mug and the sweep, kept a slab of sweep beside the mug
    and inside its handle (framing 5128 at 640²: IoU 0.674)."""
    h = len(other)
    lo, hi = int(y) + 2 * half, min(h, int(y) + 4 * half + 1)
    if hi - lo < half:
        return False
    under = np.median(other[lo:hi], axis=0)
    to_wall = float(np.abs(under - wall).max())
    return to_wall <= 20 and to_wall < float(np.abs(under - table).max())


def _fit_two_planes(img: np.ndarray, band: int, hz: Horizon) -> TwoPlanes | None:
    """Wall and table fitted apart on the border band, blended across the horizon."""
    h, w, _ = img.shape
    ys, xs = np.nonzero(_border_sel(h, w, band))
    step = max(1, len(ys) // 8000)
    ys, xs = ys[::step], xs[::step]
    dist = ys - hz.line(xs.astype(np.float32), w)
    margin = hz.width / 2 + 2
    vals = img[ys, xs].astype(np.float32)
    design = _design(xs / w - 0.5, ys / h - 0.5)
    wall, table = dist < -margin, dist > margin
    if wall.sum() < 60 or table.sum() < 60:
        return None
    cw, kw = _robust_fit(design[wall], vals[wall], hz.wall)
    # The table is often seen only in the side strips (the product covers the bottom band):
    # its curvature across the frame is then unknown, and the lens's vignetting, which the
    # wall shows along the top band, is the best guess for it (scaled to the table's level).
    prior = None
    if hz.wall is not None and hz.table is not None:
        prior = cw * (np.maximum(hz.table, 1.0) / np.maximum(hz.wall, 1.0))[None, :]
    ct, kt = _robust_fit(design[table], vals[table], hz.table, prior)
    inl = np.concatenate([kw, kt])
    r_in = np.concatenate([(vals[wall] - (design[wall] @ cw))[kw], (vals[table] - (design[table] @ ct))[kt]])
    sigma = float(np.median(np.abs(r_in - np.median(r_in, 0)))) * 1.4826
    frac = float(inl.mean())

    def noise(r: np.ndarray) -> float:
        return max(float(np.median(np.abs(r - np.median(r, 0)))) * 1.4826, 0.8)

    # Each plane's own noise: a wood table's grain is many times a painted wall's noise, and
    # one figure for both made the grain product (or the wall's faint product edges noise).
    return TwoPlanes(hz, cw, ct, max(sigma, 0.8), frac,
                     noise((vals[wall] - design[wall] @ cw)[kw]),
                     noise((vals[table] - design[table] @ ct)[kt]))


@dataclass(frozen=True)
class TwoPlanes:
    """Wall and table surfaces (6×3 coefficients each) and their noise."""
    hz: Horizon
    cw: np.ndarray
    ct: np.ndarray
    sigma: float
    frac: float
    s_wall: float
    s_table: float

    def at(self, ys: np.ndarray, xs: np.ndarray, h: int, w: int):
        """(backdrop, table weight, wall colour, table colour, signed rows from the horizon)
        at pixel coordinates (float32 arrays of any shape)."""
        grid = _design((xs + 0.5) / w - 0.5, (ys + 0.5) / h - 0.5)
        d = ys - self.hz.line(xs, w)
        t = np.clip(d / max(self.hz.width * 1.1, 1.0) + 0.5, 0, 1)
        t = (t * t * (3 - 2 * t))[..., None]
        wall_c, table_c = grid @ self.cw, grid @ self.ct
        return wall_c * (1 - t) + table_c * t, t[..., 0], wall_c, table_c, d

    def full(self, h: int, w: int):
        """(backdrop, horizon band mask, planes for ``_evidence``) over the whole frame."""
        gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
        bg, t, wall_c, table_c, d = self.at(gy, gx, h, w)
        hband = np.abs(d) <= self.hz.width / 2 + 2
        planes = (t.astype(np.float32), self.s_wall, self.s_table,
                  wall_c.astype(np.float32), table_c.astype(np.float32))
        return bg.astype(np.float32), hband, planes

    def border_residual(self, img: np.ndarray, band: int) -> np.ndarray:
        """Largest channel difference from this backdrop on the border band, in the order of
        ``img[_border_sel(...)]`` (the full frame is made for the one candidate used)."""
        h, w, _ = img.shape
        ys, xs = np.nonzero(_border_sel(h, w, band))
        bg = self.at(ys.astype(np.float32), xs.astype(np.float32), h, w)[0]
        return _max3(np.abs(img[ys, xs] - bg))

    def border_noise(self, img: np.ndarray, band: int) -> np.ndarray:
        """Each border pixel's own plane's noise (the wall's above the horizon, the table's
        below, blended across it), in the order of ``border_residual``."""
        h, w, _ = img.shape
        ys, xs = np.nonzero(_border_sel(h, w, band))
        t = self.at(ys.astype(np.float32), xs.astype(np.float32), h, w)[1]
        return self.s_wall + (self.s_table - self.s_wall) * t


def _grain_gain(one_res: np.ndarray, two_res: np.ndarray, noise: np.ndarray) -> float:
    """How much more of the border two planes explain than one surface with each border pixel
    judged at its own plane's noise, uncapped and tight (within max(3, 1.5 σ) levels): on a
    grained or blotched table judged at the one surface's σ (``_work_regions``' cap) neither
    model explains the table and the wall alone decides; judged at 4 σ of the grain, one
    surface explains it too. Within 1.5 σ, where a grain's pixels mostly lie about the right
    surface, one surface bent across the horizon leaves them: a light planked table under a
    pale blue wall, two planes win the capped border by 0.047 (under the 0.05 margin) and by
    0.127 here (textured 14001 at 640²: IoU 0.39 with one surface)."""
    tol = np.maximum(3.0, _GRAIN_K * noise)
    return float((two_res < tol).mean()) - float((one_res < tol).mean())


_GRAIN_K = 1.5
_GRAIN_RATIO = 3.0
"""``_grain_gain`` is asked only when no candidate won the capped border and the table's noise
is ``_GRAIN_RATIO`` times the wall's and the one surface's σ or more (a grained table)."""


def _inlier_share(residual: np.ndarray, sigma: float | np.ndarray) -> float:
    """Share of border pixels a backdrop explains: residual under max(6, 4 σ) levels (σ one
    figure, or one per pixel)."""
    return float((residual < np.maximum(6.0, 4.0 * sigma)).mean())


def backdrop_at(coef: np.ndarray, ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> np.ndarray:
    """The fitted backdrop colour at pixel coordinates (ys, xs) of an h×w image."""
    xn = (xs.astype(np.float32) + 0.5) / w - 0.5
    yn = (ys.astype(np.float32) + 0.5) / h - 0.5
    design = np.stack([np.ones_like(xn), xn, yn, xn * xn, xn * yn, yn * yn], 1)
    return design @ coef


_MEAN3 = np.full((1, 3), 1 / 3, np.float32)
_SUM3 = np.ones((1, 3), np.float32)


def _grad(x: np.ndarray) -> np.ndarray:
    return cv2.magnitude(cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3),
                         cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3)) * 0.125


@dataclass(frozen=True)
class Evidence:
    product: np.ndarray
    """bool: something the backdrop (lit or shadowed) cannot explain."""
    bg_like: np.ndarray
    """bool: the backdrop itself."""
    shadow_like: np.ndarray
    """bool: the backdrop's chroma, darker (but not below ``shadow_floor``)."""
    ratio: np.ndarray
    """float32: brightness over the backdrop's."""
    chroma: np.ndarray
    """float32: chroma distance in units of the product threshold (1 = product)."""
    tol: np.ndarray
    """float32: the noise of ``ratio`` (a few sensor-noise units over the backdrop level)."""
    lum_bg: np.ndarray | None = None
    """float32: the backdrop model's brightness (levels, + 1)."""
    tint: np.ndarray | None = None
    """bool: product evidence from the faint tint alone (in ``product`` too)."""
    restored: np.ndarray | None = None
    """bool: a light part ``_restore_lit_parts`` gave back to the product (a sole that reads
    as the table's shadow, with the table stepping down under it): the confidence's
    looks-like-backdrop doubts leave it out, as that call was made on its own evidence."""
    enclosed: np.ndarray | None = None
    """bool: the backdrop ``_drop_enclosed_shadow`` cut from between thin parts of the
    product (a stool's legs): the confidence doubts such a cutout (``enclosed``)."""
    lifted: np.ndarray | None = None
    """bool: white on white: the faintly lifted or tinted faces the outline's closing was
    seeded with; the confidence doubts a cutout that left large ones out (``white_left``)."""
    grown: np.ndarray | None = None
    """bool: white on white: what ``_shading_goes_up`` gave back above the outline's closing
    (a lit neck), taken by the product's shading alone (``white_up``)."""


def _evidence(img: np.ndarray, bg: np.ndarray, sigma: float, band_mask: np.ndarray,
              p: ClassicalParams, hband: np.ndarray | None = None,
              planes: tuple[np.ndarray, float, float] | None = None,
              averaged: float = 2.0) -> Evidence:
    """Product evidence and what the pixels look like, on the work copy. ``planes`` (table
    weight per pixel, wall noise, table noise) gives two planes their own noise.
    ``averaged``: photo pixels per work pixel (along a side)."""
    if planes is not None:
        tw, s_wall, s_table = planes[:3]
        sigma = (s_wall + (s_table - s_wall) * tw).astype(np.float32)
        if hband is not None:
            # Along the horizon the model's step may sit a pixel off: the larger noise there.
            sigma[hband] = max(s_wall, s_table)
    lum = cv2.transform(img, _MEAN3) + 1.0
    lum_bg = cv2.transform(bg, _MEAN3) + 1.0
    ratio = lum / lum_bg
    # Chroma distance: what is left of the colour after the best brightness scaling of the
    # backdrop's colour, i.e. the distance to the line through black and the backdrop colour.
    scaled_bg = bg * ratio[..., None]
    diff = img - scaled_bg
    chroma = np.sqrt(cv2.transform(diff * diff, _SUM3))
    t_chroma = np.maximum(p.min_chroma, p.chroma_sigmas * sigma)
    brighter = lum - lum_bg > np.maximum(6.0, p.bright_sigmas * sigma)
    # Sharp edges of the brightness-ratio image: a product's outline is a step, a shadow's edge
    # is soft. The gradient of a difference of Gaussians (fine minus coarse) keeps steps and
    # cancels gradients wider than a few pixels, even where a step sits inside a shadow's ramp.
    rel = ratio * 255.0
    dog = cv2.GaussianBlur(rel, (0, 0), 1.0) - cv2.GaussianBlur(rel, (0, 0), 3.0)
    g = _grad(dog)
    g_noise = _grad_noise(g[band_mask], averaged) if band_mask.any() else 0.3
    if planes is not None:
        on_table = planes[0] >= 0.5
        sel_w, sel_t = band_mask & ~on_table, band_mask & on_table
        if sel_w.sum() >= 50 and sel_t.sum() >= 50:
            g_w, g_t = _grad_noise(g[sel_w], averaged), _grad_noise(g[sel_t], averaged)
            g_noise = g_w + (g_t - g_w) * planes[0]
    # Keep only the ridge of that response: its skirt reaches several pixels past the edge.
    ridge = g >= 0.6 * cv2.dilate(g, np.ones((5, 5), np.uint8))
    edge = (g > np.maximum(1.2, p.edge_sigmas * g_noise)) & ridge
    if hband is not None:
        # Along the horizon the model's step may sit a pixel off: its edge is not product.
        # A product's outline crossing the horizon (a bottle's side, a label's edge) is: its
        # gradient runs across the horizon's.
        gx = np.abs(cv2.Sobel(dog, cv2.CV_32F, 1, 0, ksize=3))
        gy = np.abs(cv2.Sobel(dog, cv2.CV_32F, 0, 1, ksize=3))
        edge &= ~(hband & (gy > 0.5 * gx))
    evidence = (chroma > t_chroma) | brighter | (ratio < p.shadow_floor) | edge
    # A faint tint, clear over a few pixels: a warm-grey sole on a neutral sweep in a dim shot
    # is off the backdrop's colour by ~0.8 of the threshold per pixel (noise hides it), but its
    # 5×5 mean is 3+ times the plain backdrop's largest. Eroded by the box's reach, so the mean
    # does not spill a rim of backdrop around a coloured product. Not on the horizon (mixes).
    mdiff = cv2.blur(diff, (5, 5))
    tinted = np.sqrt(cv2.transform(mdiff * mdiff, _SUM3)) > p.tint_frac * t_chroma
    tinted = cv2.erode(tinted.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if hband is not None:
        tinted &= ~hband
    tint = tinted & ~evidence
    evidence |= tinted
    neutral = chroma < 0.6 * t_chroma
    if planes is not None and hband is not None and hband.any():
        # On the horizon any mix of the wall and the table is backdrop: where the real blend
        # is sharper or softer than the model's, a pixel is off the model's colour but on
        # the segment from wall to table. Such pixels made a line of "product" along the
        # horizon, which closed the gap between a cable and its case into a hole.
        ys, xs = np.nonzero(hband)
        wc, tc, px = planes[3][ys, xs], planes[4][ys, xs], img[ys, xs]
        seg = tc - wc
        u = np.clip(_dot(px - wc, seg) / np.maximum(_dot(seg, seg), 1.0), 0, 1)
        off = px - wc - u[:, None] * seg
        tc_h = t_chroma[ys, xs] if np.ndim(t_chroma) else t_chroma
        mix = np.sqrt(_dot(off, off)) < tc_h
        # ...where the product does not cross the horizon there: no evidence just above or
        # below the band in that column (a label of the wall's colour crossing it is product).
        reach = int(hband.sum(0).max()) // 2 + 3
        crossing = cv2.dilate((evidence & ~hband).astype(np.uint8),
                              np.ones((2 * reach + 1, 1), np.uint8)) > 0
        mix &= ~crossing[ys, xs]
        # Not evidence, but not backdrop-like either: a product's face of the wall's colour
        # (a label) crossing the horizon would be a "see-through hole" one band tall.
        my, mx = ys[mix], xs[mix]
        evidence[my, mx] = edge[my, mx]
    bg_like = neutral & (np.abs(ratio - 1.0) * lum_bg < np.maximum(4.0, 3 * sigma))
    shadow_like = neutral & (ratio >= p.shadow_floor) & ~brighter
    tol = np.maximum(0.03, 2.5 * sigma / lum_bg)
    hue_noise = float(np.median(chroma[band_mask])) if band_mask.any() else 0.0
    md = cv2.blur(diff, (3, 3))
    hue_d = np.sqrt(cv2.transform(md * md, _SUM3))
    off = _off_hue_lines(hue_d, hue_noise, chroma, ratio, t_chroma, hband)
    if off is not None:
        evidence |= off
        bg_like &= ~off
        shadow_like &= ~off
    chroma *= 1.0 / t_chroma
    chroma[brighter] = np.inf
    return Evidence(evidence, bg_like, shadow_like, ratio, chroma, tol, lum_bg, tint)


def _off_hue_lines(hue_d: np.ndarray, noise: float, chroma: np.ndarray, ratio: np.ndarray,
                   t_chroma: float | np.ndarray, hband: np.ndarray | None) -> np.ndarray | None:
    """bool: thin dark lines off the backdrop's hue by more than its own colour noise, or None.

    A grey metal leg on a brown wood table is shadow-dark (0.77-0.85 of the table) and off
    the table's hue by 7-12 levels, under the chroma threshold that the wood's grain sets
    (5 sigma, 15-18 levels): shadow-like, all of it rim, it was given back whole (novel textured
    498, 589, 590: IoU 0.57, said high). No shadow has another hue (it scales the backdrop),
    and the table's own colour noise is 0.2-0.6 level (``noise``: the border band's median
    chroma distance): a 3×3 mean (``hue_d``) off by 4 of those, ``_HUE_MIN`` levels and
    ``_HUE_OF_T`` of the chroma threshold, on a line darker than what is beside it (the
    ratio's black-hat over an 11 px disc over ``_HUE_LINE``: the foot ring lies in the
    stool's shadow, 0.05-0.1 under it), in pieces of ``_HUE_PIECE`` px or more, is product.
    The legs' 3×3 means are 5.4-13 levels, 0.3-0.9 of the threshold. Without the floors a
    chrome bottle's soft highlight edge on a clean sweep (4.0-4.5 levels off) and a watch's
    light bezel on grained stone (0.13-0.25 of a threshold of 36 levels) came in, and the
    highlight and the watch's white face were then left out as holes (known glossy 35 at
    640², 0.982 -> 0.958; novel textured 401, 0.911 -> 0.687, said high)."""
    cand = ((hue_d > np.maximum(max(_HUE_MIN, _HUE_NOISES * noise), _HUE_OF_T * t_chroma))
            & (chroma < t_chroma) & (ratio < 1.0))
    if hband is not None:
        cand &= ~hband
    box = _around(cand.view(np.uint8), 8)
    if box is None:
        return None
    line = cv2.morphologyEx(ratio[box], cv2.MORPH_BLACKHAT, _DISC11) > _HUE_LINE
    ob = cand[box] & line
    n, lab, st, _ = cv2.connectedComponentsWithStats(ob.view(np.uint8), connectivity=8)
    big = st[:, cv2.CC_STAT_AREA] >= _HUE_PIECE
    big[0] = False
    ob = big[lab]
    out = np.zeros_like(cand)
    out[box] = ob
    return out if out.any() else None


_HUE_NOISES = 4.0
_HUE_MIN = 4.6
_HUE_LINE = 0.04
_HUE_PIECE = 24
_HUE_OF_T = 0.25
_AVERAGED_REF = 2.0
_TAIL = 2.5


def _grad_noise(gb: np.ndarray, averaged: float) -> float:
    """The unit of the edge threshold: the border band's median gradient (``gb``), credited
    back what averaging more photo pixels per work pixel took off it on a textured backdrop.

    The threshold is 6× that median. Sensor noise is averaged over the k×k photo pixels
    behind a work pixel, so past the 2×2 of a 640² or 800² photo the median falls (linen
    and stone bands: to about 0.7× at 1500², k = 4), while a wood table's grain and seams
    keep their contrast. The grain then passed as product evidence and was closed onto the
    product (textured 9421 at 1500²: a strip of wood under the sole, and a patch at the
    frame's edge, IoU 0.915; 0.995 at 640²). Noise-like bands (a sweep's sensor noise, linen's
    weave: 90th percentile 1.8-1.9× the median) keep the plain median, as a faint edge on
    them is all there is to find (a cream label's shaded side on linen). A band with a heavy
    tail (90th percentile over ``_TAIL``× the median: grain, seams, veins) is credited
    up to √(k/2), no more than its tail says. Nothing changes at k ≤ 2."""
    med = _unflattened_median(gb)
    if averaged <= _AVERAGED_REF or med <= 0:
        return med
    q90 = float(np.percentile(gb, 90))
    return med * min(max(q90 / (_TAIL * med), 1.0), (averaged / _AVERAGED_REF) ** 0.5)


def _unflattened_median(gb: np.ndarray) -> float:
    """The border band's median gradient, or what it would be had JPEG not flattened the
    noise. A dim, noisy backdrop saved at a low quality (55-75) keeps its noise as blotches:
    blocks whose fine detail was quantised away, their steps left. Much of the band then has
    next to no gradient and the median fell to a fifth of what the blotches' edges reach
    (low light 5183, a bottle on a dim grey: median 0.21, 97th percentile 2.6); 6× it lit
    the blotches' edges over 13 % of the band, and closed they were kept as product (IoU
    0.689 at 640², 0.746 at 800²). Noise, textured tables and bands a product crosses have
    a median at most 6.4× their 10th percentile (tuning 0-44 at 640²: a dim ring's band;
    textured tables up to 5.0), the dim JPEG bands of fresh seeds 10000-10199 up to 14;
    past ``_FLAT_BAND``× the band is flattened, and the unit is at least its 97th percentile
    over ``_FLAT_TAIL`` (noise's is 0.76 σ against a median of 1.18 σ, Rayleigh: a band of
    plain noise never reaches it; the 97th, not the 99th, so that a product's outline
    crossing the band does not set it)."""
    q10, med = (float(v) for v in np.percentile(gb, [10, 50]))
    if med <= _FLAT_BAND * q10:
        return med
    return max(med, float(np.percentile(gb, 97)) / _FLAT_TAIL)


_FLAT_BAND = 7.0
_FLAT_TAIL = 3.5


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_DISC7 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))


def _close_in_frame(m: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Morphological closing of a 0/1 mask as if the frame went on as its edge rows and
    columns do. OpenCV's default border counts everything past the frame as set for the
    erosion, so the closing glued any evidence within half the kernel of the frame's edge to
    the edge: a wood seam 2-3 work px above the bottom edge became a strip of table 3+ px
    thick, which the opening and the rim pass no longer remove (textured 33 at 1500²: a
    full-width strip kept, IoU 0.953). A product cropped by the frame touches the edge, so
    it is continued past it and stays as it was."""
    r = max(kernel.shape) // 2 * 2 + 1
    padded = cv2.copyMakeBorder(m, r, r, r, r, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)[r:-r, r:-r])


def _drop_specks(m: np.ndarray, min_area: float) -> np.ndarray:
    # (The labels alone and their areas by a bincount: OpenCV's per-component statistics
    # cost ~3× as much as the labelling on a 400² work copy; the same labels and areas.)
    n, labels = cv2.connectedComponents(m, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = np.bincount(labels.ravel(), minlength=n)[1:] >= min_area
    if keep[1:].all():  # no speck (most calls): every labelled pixel stays, no table look-up
        return (labels > 0).view(np.uint8)
    return keep[labels].astype(np.uint8)


def _fill_holes(m: np.ndarray, bg_like: np.ndarray, chroma: np.ndarray | None = None
                ) -> np.ndarray:
    """Fill what the border cannot reach, unless it looks like the backdrop (a handle's hole).

    A hole is kept when half of it or more is plain backdrop. With ``chroma`` (the
    evidence's, in units of the product threshold) a hole from 30 % plain backdrop is kept
    too when its plain part has the colour of the plain backdrop outside the product (median
    chroma within ``_HOLE_CHROMA`` of it): a mug's handle cropped at the bottom holds the
    mug's own soft shadow, which left 45 % of the hole plain, and the backdrop seen through
    it was kept as product (framing 9/27: IoU 0.90). A product's face that looks plain (a
    white bottle's shaded side, a chrome band) is off the backdrop's colour by 0.2-0.5 of
    the threshold, the see-through holes of the tuning set by 0.00-0.07. The other way, a
    hole 50-90 % plain whose plain part is ``_FACE_CHROMA`` or more off is filled: a cream
    label's shaded side on a beige wood table (textured 8014: the label's left third was
    cut away)."""
    inv = (1 - m).astype(np.uint8)
    # (The labels alone: OpenCV's per-component statistics cost ~3× as much on a 400² work
    # copy. The areas, and the plain pixels' labels, counted as integers: the same fractions
    # as the float-weighted bincount over the frame, several times faster.)
    n, labels = cv2.connectedComponents(inv, connectivity=4)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    hole_ids = np.setdiff1d(np.arange(1, n), border_labels)
    if not len(hole_ids):
        return m
    counts = np.bincount(labels.ravel(), minlength=n)
    bg_counts = np.bincount(labels[bg_like.astype(bool, copy=False)], minlength=n)
    frac = bg_counts / np.maximum(counts, 1)
    fill = np.zeros(n, bool)
    fill[hole_ids] = frac[hole_ids] < 0.5
    maybe = hole_ids[(frac[hole_ids] >= 0.3) & (frac[hole_ids] < 0.9)]
    if chroma is not None and len(maybe):
        far = bg_like & (cv2.dilate(m, np.ones((15, 15), np.uint8)) == 0)
        if far.sum() >= 50:
            out_c = float(np.median(chroma[far]))
            for i in maybe:
                plain = (labels == i) & bg_like
                off = float(np.median(chroma[plain])) - out_c
                if fill[i] and off < _HOLE_CHROMA:
                    fill[i] = False
                elif not fill[i] and off >= _FACE_CHROMA:
                    fill[i] = True
    return (m.astype(bool) | fill[labels]).astype(np.uint8)


_HOLE_CHROMA = 0.1
_FACE_CHROMA = 0.3
"""A hole of 50-90 % plain pixels whose plain part is this far off the outside backdrop's
colour (in chroma threshold units) is a face of the product (a cream label's shaded side on
a beige table: 0.33-0.48; the see-through holes of 50-90 % in the tuning set: up to 0.25),
and filled."""


def _hull_fill(m: np.ndarray, bg_like: np.ndarray, solidity: float) -> np.ndarray:
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return m
    pts = np.concatenate(contours)
    hull = np.zeros_like(m)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
    if m.sum() >= solidity * hull.sum():
        return m
    return m | (hull.astype(bool) & ~bg_like).astype(np.uint8)


def _fill_outlines(m: np.ndarray, bg_like: np.ndarray) -> np.ndarray:
    """A region that is mostly outline (a white product on white: only its edges differ) is
    filled to its convex hull, less whatever there looks like the backdrop. Per region first;
    then all regions together if they are still mostly outline (an outline broken in pieces)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    out = m.copy()
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        comp = (labels[y:y + h, x:x + w] == i).astype(np.uint8)
        out[y:y + h, x:x + w] |= _hull_fill(comp, bg_like[y:y + h, x:x + w], 0.6)
    return _hull_fill(out, bg_like, 0.4)


def _regions(evidence: np.ndarray, bg_like: np.ndarray, shadow_like: np.ndarray,
             p: ClassicalParams, img: np.ndarray, bg: np.ndarray,
             ev: Evidence | None = None) -> np.ndarray:
    h, w = evidence.shape
    m = _close_in_frame(evidence.astype(np.uint8), _DISC7)
    m = _drop_specks(m, p.min_region * h * w)
    m = _fill_holes(m, bg_like, None if ev is None else ev.chroma)
    # The hull of a thin part and what it hangs from (a cable beside its case) takes in the
    # table in their shadow: shadow-coloured pixels are no more filled in than backdrop ones,
    # unless the product is white on white (its shaded faces look the same; the region is
    # then closed from its outline: ``_close_silhouette``).
    filled = _fill_outlines(m, bg_like)
    # Only when the hull took in shadow-coloured pixels (a solid product's region has no
    # hull fill at all) is there anything to redo.
    if ((filled > m) & shadow_like).any() and (ev is None or not _whiteish(filled, ev)):
        filled = _fill_outlines(m, bg_like | shadow_like)
    m = filled
    # Edge evidence and the closing spill a few pixels past the true edge; give back the rim
    # pixels that look like backdrop or shadow.
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    rim = (m > 0) & (cv2.erode(m, disc) == 0)
    m[rim & (bg_like | shadow_like)] = 0
    # A strong step (a black box on white) has a side lobe of edge evidence a few pixels out,
    # parallel to the edge: the closing made a strip of plain backdrop of it, deeper than one
    # rim, which printed as a light line along the product. Plain backdrop next to a product
    # that is clearly not backdrop-coloured is given back to the edge (a white product's faces
    # are left alone: they look like plain backdrop).
    box = _around(m, 12)
    cand = (m > 0) & bg_like
    if box is not None and cand.any():
        mb = m[box]
        num, den = _spread_parts(
            img[box], cv2.erode(mb, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0, 3.0)
        ys, xs = np.nonzero(cand[box])
        d = den[ys, xs]
        off = num[ys, xs] / np.maximum(d, 1e-3)[:, None] - bg[box][ys, xs]
        contrast = np.zeros_like(cand)
        contrast[box][ys, xs] = (np.sqrt((off * off).sum(1)) > 40.0) & (d > 0.05)
        for _ in range(2):
            rim = (m > 0) & (cv2.erode(m, disc) == 0) & contrast
            if not rim.any():
                break
            m[rim] = 0
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _CROSS)
    m = _drop_specks(m, p.min_region * h * w)
    return _fill_holes(m, bg_like, None if ev is None else ev.chroma)


def _peel_base_shadow(m: np.ndarray, ev: Evidence, p: ClassicalParams) -> np.ndarray:
    """Give back the contact shadow under the product's base.

    A contact shadow is darker than ``shadow_floor`` at its core and its far edge is sharp
    enough to count as an edge, so the closing and the hole filling join it to the product as a
    band under the base (it printed as a sliver of the old backdrop in every composite). It is
    told from the product by walking up each column from the mask's bottom: a shadow keeps the
    backdrop's chroma and darkens towards the contact line; the product starts where the
    chroma changes, the brightness steps down (a dark product: a ratio below ``peel_step`` of
    the pixel under it), turns brighter again (a light product) or stays flat (the face of a
    grey or white product: the walk is cut back to the last pixel that still darkened)."""
    h, w = m.shape
    cols, bottom = _lowest(m)
    if not len(cols):
        return m
    rows = np.nonzero(m.any(1))[0]
    reach = max(2, round(p.peel_reach * (rows[-1] - rows[0] + 1)))
    below = ev.ratio[np.minimum(bottom + 1, h - 1), cols]
    low = below.copy()
    active = np.ones(len(cols), bool)
    flat = np.zeros(len(cols), np.int32)
    last = np.full(len(cols), -1)
    for i in range(reach):
        y = bottom - i
        yy = np.maximum(y, 0)
        r = ev.ratio[yy, cols]
        tol = ev.tol[yy, cols]
        shadow = (active & (y >= 0) & (m[yy, cols] > 0) & (ev.chroma[yy, cols] < p.peel_chroma)
                  & (r < 1.0 - tol) & (r <= low + tol) & (r >= p.peel_step * below))
        darker = r < below - 0.5 * tol
        flat = np.where(darker, 0, flat + 1)
        last = np.where(shadow & darker, i, last)
        low = np.minimum(low, r)
        below = r
        active = shadow & (flat <= 2)
        if not active.any():
            break
    out = m.copy()
    for i in range(int(last.max()) + 1):
        sel = last >= i
        out[bottom[sel] - i, cols[sel]] = 0
    return out


def _peel_shadow_under_dark(m: np.ndarray, ev: Evidence, p: ClassicalParams) -> np.ndarray:
    """Give back a band of shadow kept under a dark part that lightens towards it.

    ``_peel_base_shadow`` takes a contact shadow that darkens towards the contact line. Under
    a thin dark part held a little above the floor (sunglasses' folded arms) the shadow falls
    a few pixels lower: darkest at its foot, lighter towards the part, and the peel stopped at
    once (novel sunglasses: a band 4-6 px tall under the arms kept). Walking up each column
    from the mask's bottom over the backdrop's chroma, darker than the backdrop but not black,
    the walk is cut when it ends on a step into a dark part of the product (under
    ``shadow_floor`` and a ``peel_step`` step down), never got lighter by more than
    ``_UNDER_DARK_RISE`` from one row to the next and found nothing darker than its foot (by
    twice the noise): a light or grey face over a shadow has no such step and keeps it, and
    light grey arms (a plateau over their lighter, mixed lower edge) are no shadow. Only runs
    of ``_UNDER_DARK_RUN`` columns or more are cut."""
    h, w = m.shape
    cols, bottom = _lowest(m)
    if not len(cols):
        return m
    rows = np.nonzero(m.any(1))[0]
    reach = max(3, round(p.peel_reach * (rows[-1] - rows[0] + 1)) + 2)
    active = np.ones(len(cols), bool)
    walked = np.full(len(cols), -1)
    ends_dark = np.zeros(len(cols), bool)
    prev = ev.ratio[np.minimum(bottom + 1, h - 1), cols]
    foot = ev.ratio[bottom, cols]
    lighter = np.zeros(len(cols), bool)
    for i in range(reach + 1):
        y = bottom - i
        yy = np.maximum(y, 0)
        r = ev.ratio[yy, cols]
        inside = (y >= 0) & (m[yy, cols] > 0)
        shade = (inside & (ev.chroma[yy, cols] < p.peel_chroma) & (r >= p.shadow_floor)
                 & (r < 1.0 - ev.tol[yy, cols])
                 & (r - prev <= np.maximum(_UNDER_DARK_RISE, 2.0 * ev.tol[yy, cols])))
        dark = inside & (r < p.shadow_floor) & (r < p.peel_step * prev)
        ends_dark |= active & dark & (walked >= 1)
        active &= shade
        # A shadow is darkest at its foot: a walk that finds darker above it is on a light
        # part of the product (light grey arms: a plateau above their lighter, mixed edge).
        lighter |= active & (r < foot - 2.0 * ev.tol[yy, cols])
        walked = np.where(active, i, walked)
        prev = r
        if not active.any():
            break
    sel = ends_dark & ~active & ~lighter
    if not sel.any():
        return m
    # Runs of neighbouring columns only (a stray column of noise is no band).
    run = np.zeros(w, np.uint8)
    run[cols[sel]] = 1
    run = cv2.morphologyEx(run[None, :], cv2.MORPH_OPEN,
                           np.ones((1, _UNDER_DARK_RUN), np.uint8))[0] > 0
    sel &= run[cols]
    if not sel.any():
        return m
    out = m.copy()
    for i in range(int(walked[sel].max()) + 1):
        s = sel & (walked >= i)
        out[bottom[s] - i, cols[s]] = 0
    return out


_UNDER_DARK_RUN = 5
"""``_peel_shadow_under_dark``: columns in a run at least this long."""
_UNDER_DARK_RISE = 0.08
"""...and a walk that gets lighter by more than this from one row to the next has stepped
onto a light grey part of the product (sunglasses' light arms over their shadow: the arms
were cut with it, 0.874 -> 0.854), not up a shadow's soft top."""

def _confidence_signals(img: np.ndarray, bg: np.ndarray, sigma: float, band: int,
                        hard: np.ndarray, ev: Evidence) -> dict[str, float]:
    """What a classical cutout knows of its own doubt, as numbers (``_confidence`` weighs
    them). All on the work copy, so they do not depend on the photo's size."""
    h, w = hard.shape
    sel = _border_sel(h, w, band)
    res = _max3(np.abs(img - bg))[sel]  # (the frame, then the band: ~4× faster than the band's rows)
    fit = float((res < max(6.0, 4.0 * sigma)).mean())
    area = float(hard.mean())
    edge = np.concatenate([hard[0], hard[-1], hard[:, 0], hard[:, -1]]).astype(bool)
    touch = float(edge.mean())
    inside = hard > 0
    n_in = max(int(inside.sum()), 1)
    shadowy = (ev.chroma < 0.6) & (ev.ratio > 0.3) & (ev.ratio < 1 - ev.tol)
    amb_px = ((ev.shadow_like | ev.bg_like) & ~ev.product) | shadowy
    skip = None
    if ev.restored is not None:
        # A light sole given back by ``_restore_lit_parts`` looks like the table's shadow by
        # its colour, all of it and along its outline; the step down under it decided it.
        # Counted, a right sole cutout read as a blob of shadow filled in (textured 9422 at
        # 800², IoU 0.988: 0.37 `low`).
        amb_px = amb_px & ~ev.restored
        skip = cv2.dilate(ev.restored.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    amb = float(amb_px[inside].sum() / n_in)
    sig: dict[str, float] = {"fit": fit, "area": area, "touch": touch, "amb": amb,
                             "sigma": float(sigma)}
    sig["white"] = float(bool(hard.any()) and _whiteish(hard, ev))
    bg_in = inside & ev.bg_like & ~ev.product
    if ev.restored is not None:
        bg_in &= ~ev.restored
    sig["bg_inside"] = float(bg_in.sum() / n_in)
    if ev.enclosed is not None:
        # Off the outline (its 3×3 cross erosion): the mixed pixels along thin parts' rims
        # read as backdrop and are the edge matte's to decide.
        sig["bg_inside_core"] = float((bg_in & (cv2.erode(hard, _CROSS) > 0)).sum() / n_in)
    diff, thr = _outline_contrast(img, hard, sigma, skip)
    sig["unsup"] = float((diff < thr).mean()) if diff is not None else 0.0
    # Faint: under twice the "same colour" threshold (a white product's outline).
    sig["weak_outline"] = float((diff < 2.0 * thr).mean()) if diff is not None else 0.0
    sig["smooth"] = _smooth_beside(img, hard, band, sigma)
    sig["notch"], white_notch = _mirror_notches(img, bg, hard,
                                                sigma if sig["white"] else None)
    sig["white_notch"] = white_notch
    sig["amb_blob"] = _ambiguous_blob(inside, amb_px)
    sig["lit_beyond"], sig["lit_down"] = _lit_beyond_parts(hard, ev)
    sig["pocket"] = _backdrop_pockets(img, hard, ev)
    if ev.lifted is not None:
        sig["white_left"] = _white_left(hard, ev.lifted)
        sig["white_apart"] = _apart(hard)
        # The share of the product given back by its shading alone (a lit neck; a white
        # strap's lower part). Recorded, not weighed.
        sig["white_up"] = (float(np.count_nonzero(ev.grown & inside)) / n_in
                           if ev.grown is not None else 0.0)
    if ev.enclosed is not None:
        cut = int(np.count_nonzero(ev.enclosed))
        sig["enclosed"] = cut / max(n_in + cut, 1)
    # Weighed on white on white only (``_conf_doubts``): elsewhere its edge pass (~2.3 ms at
    # 2000²) would be thrown away.
    sig["soft_shadow"] = _soft_shadow_outline(img, hard, ev, sel) if sig["white"] else 0.0
    # On a neutral sweep only: on a wood table decided whiteish (textured 19017, a box, IoU
    # 0.96) the grain over the product's middle stood 4 levels off the grain beside it.
    sig["white_above"] = (_goes_on_above(img, bg, hard)
                          if sig["white"] and _neutral_sweep(bg, sel) else 0.0)
    return sig


def _white_left(hard: np.ndarray, lifted: np.ndarray) -> float:
    """White on white: the area of the faintly lifted or tinted faces (``lifted``, the
    closing's seed) that the cutout left out whole, near the product (within its box grown
    by its larger side upwards and by half of it sideways and down), over the product's area.
    A white headband arching over a white sweep is brighter than the sweep at its top and
    crosses the sweep's brightness on its way down to the ear cups: its top is a lifted face
    cut off from the cups, and the closing drops it with the rest of the band (novel white on
    white headphones at 640²: IoU 0.4-0.86, most said `high`, 0.32-0.39 of their area left
    out); a white box's or bottle's faces all join its outline (0)."""
    if not hard.any():
        return 0.0
    inside = hard > 0
    ys, xs = np.nonzero(inside)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    reach = max(y1 - y0 + 1, x1 - x0 + 1)
    h, w = hard.shape
    near = np.zeros((h, w), bool)
    near[max(0, y0 - reach):min(h, y1 + reach // 2 + 1),
         max(0, x0 - reach // 2):min(w, x1 + reach // 2 + 1)] = True
    n, labels, stats, _ = cv2.connectedComponentsWithStats(lifted.astype(np.uint8),
                                                          connectivity=8)
    if n <= 1:
        return 0.0
    out = np.bincount(labels[near & ~inside], minlength=n)
    whole = out >= _LEFT_WHOLE * stats[:, cv2.CC_STAT_AREA]
    whole[0] = False
    return float(out[whole].sum() / max(int(inside.sum()), 1))


def _apart(hard: np.ndarray) -> float:
    """The share of the product's area outside its largest part (8-connected): a white
    headband kept at its lit top, its sides lost where their brightness crosses the sweep's,
    hangs over the ear cups apart from them (novel white on white headphones at 640²: 0.2-0.3,
    IoU 0.74-0.86, said `high`); a white box or bottle is one part (0)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    if n <= 2:
        return 0.0
    areas = stats[1:, cv2.CC_STAT_AREA]
    return float(1.0 - areas.max() / max(int(areas.sum()), 1))


def _goes_on_above(img: np.ndarray, bg: np.ndarray, hard: np.ndarray) -> float:
    """How far (in levels) the sweep straight above the product's middle third stands off
    the sweep beside it, at the same rows: a white part going on up out of the cutout at a
    level of its own. Over the rows from 3 pixels above the product's top to half its height
    above it, the median brightness less the backdrop model's over the middle third of its
    columns, against the same over a strip of its width to its left and to its right (the
    nearer of the two: a cast shadow may lie on one side). A white watch on a white sweep
    whose white strap was lost with its case kept reads 1.5-2.6 (the strap 2-4 levels under
    the sweep over most of that span; novel white on white 570, 583, 724 at 640², IoU 0.40,
    said `high`); a white box, bottle or whole watch 0.02-0.24: the sweep goes on above it,
    the model's error the same over the middle as beside."""
    ys, xs = np.nonzero(hard)
    if not len(ys):
        return 0.0
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    ph, pw = y1 - y0 + 1, x1 - x0 + 1
    r0, r1 = max(0, y0 - ph // 2), y0 - 3
    if r1 - r0 < 4 or pw < 6:
        return 0.0
    w = hard.shape[1]
    res = cv2.transform(img[r0:r1] - bg[r0:r1], _MEAN3)
    mid = float(np.median(res[:, x0 + pw // 3:x1 + 1 - pw // 3]))
    off = [abs(mid - float(np.median(side))) for side in (
        res[:, max(0, x0 - pw):max(0, x0 - 3)], res[:, min(w, x1 + 4):min(w, x1 + 1 + pw)])
        if side.size > 20]
    return min(off) if off else 0.0


_LEFT_WHOLE = 0.8
"""``_white_left``: a lifted piece counts as left out where this share of it lies outside
the cutout (a face the cutout kept in part is its own doubt's, ``white_weak``)."""


def _soft_shadow_outline(img: np.ndarray, hard: np.ndarray, ev: Evidence,
                         band_mask: np.ndarray) -> float:
    """The longest stretch of the outline, as a share of all of it, that runs along no sharp
    step of brightness (``_silhouette_edges``: a difference of Gaussians, which cancels a
    soft shadow's ramp) with shadow inside it (darker than the backdrop by more than its
    noise, the backdrop's chroma): a cast shadow kept with the product. A product's own
    outline is a sharp step, dark face or light; a white product's lit face, faint against
    the sweep, is not darker than it. White on white 5516 at 640² (a white bottle, the
    closing kept a wedge of its soft shadow: IoU 0.82, said `high`) reads 0.24; right white
    products on white 0.00-0.08 (tuning 0-44 and fresh 15000-15299 at 640²)."""
    line = (hard > 0) & (cv2.erode(hard, _CROSS) == 0)
    line[:3], line[-3:], line[:, :3], line[:, -3:] = False, False, False, False
    total = int(np.count_nonzero(line))
    if total < 8:
        return 0.0
    box = _around(hard, 6)
    sub = line[box]
    edges = _silhouette_edges(img, band_mask, None)[box]
    near = cv2.dilate(edges.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    dark = (ev.ratio[box] < 1.0 - ev.tol[box]) & (ev.chroma[box] < 0.6)
    soft = sub & ~near & dark
    if not soft.any():
        return 0.0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(soft.astype(np.uint8),
                                                          connectivity=8)
    return float(stats[1:, cv2.CC_STAT_AREA].max()) / total


def _lit_beyond(hard: np.ndarray, ev: Evidence) -> float:
    """Steps of brightness beyond the product's outline with a *lighter* band between them
    and the outline, per outline pixel: a part left out. A white sole under a sneaker on a
    white table (textured 9422) looks like the table's shadow — its chroma, 7 % darker — so
    it was given back as a cast shadow (640²) or never closed (800², 1500²: its ends meet
    the shadow at the same grey). Its lower edge, a sharp step down into the sneaker's own
    shadow, is left 10-30 work px under the cutout, and nothing else said so (IoU 0.69-0.72,
    confidence 0.97-0.99). A cast shadow's own edge steps the other way (darker towards the
    product), as does a contact shadow's; a lit patch inside a cast shadow (a mug's handle
    seen through its shadow) has the shadow between it and the outline; a textured table's
    grain or seams step either way and seldom along the outline. Counted: product evidence
    ``_LIT_FROM`` px to ``_LIT_REACH`` × √area outside the mask's main parts (each 10 %+ of
    it) whose step (3×3 mean of the brightness ratio, 2.5 px either side along the way out
    of the mask) runs along the outline (cos > 0.7), is sharp (over twice the change from
    2.5 to 5.5 px inwards: not a soft shadow's ramp), and where the band from 3 px off the
    outline to 2.5 px before the step (three samples along the way in) is lighter than 2.5
    px past the step by over max(0.04, 1.5 × the ratio's noise), neither mask nor coloured
    product evidence, nor brighter than the backdrop. The figure is the share of the outline
    with such a step beyond it. 9422 reads 0.25 / 0.36 / 0.37 at 640² / 800² / 1500², the
    same miss in low light (a sneaker's sole on a grey-looking sweep, low light 4008, found
    in pieces) 0.19 / 0.14 / 0.11; cutouts that are not misses 0.06 at most (the lit gap
    between a ring and its soft shadow, holes 9008 at 640²)."""
    return _lit_beyond_parts(hard, ev)[0]


def _lit_beyond_parts(hard: np.ndarray, ev: Evidence) -> tuple[float, float]:
    """``_lit_beyond``'s share of the outline, and the same share counting only the steps
    *under* the product (the way out of the mask pointing down, ``_LIT_DOWN``): where a sole
    left out lies. A plant's lit steps on wood lie round its leaves every way (novel textured
    422, 454 at 640², right cutouts: 0.061 / 0.067 all told)."""
    steps = _lit_steps(hard, ev)
    if steps is None or not len(steps.ys):
        return 0.0, 0.0
    hard, ys, xs = steps.hard, steps.ys, steps.xs
    h, w = hard.shape
    line = (hard > 0) & (cv2.erode(hard, _CROSS) == 0)  # the outline
    per = max(int(line.sum()), 1)
    # The share of the outline with such a step beyond it: each step marks the outline pixel
    # nearest to it, and 2 px of outline either side (a faint edge in low light is found in
    # pieces; a double edge does not count twice).
    _, near = cv2.distanceTransformWithLabels((hard == 0).astype(np.uint8), cv2.DIST_L2, 5,
                                              labelType=cv2.DIST_LABEL_PIXEL)

    def share(sel) -> float:
        hit_lab = np.zeros(int(near.max()) + 1, bool)
        hit_lab[near[ys[sel], xs[sel]]] = True
        hit = np.zeros((h, w), np.uint8)
        hit[hard > 0] = hit_lab[near[hard > 0]]
        return float(((cv2.dilate(hit, _DISC5) > 0) & line).sum() / per)

    every = share(slice(None))
    if every < _LIT_DOWN_FROM:
        return every, 0.0  # (under the product there is no more: lit_grain cannot start)
    return every, share(steps.ny >= _LIT_DOWN)


_LIT_DOWN = 0.7
"""``_lit_beyond_parts``: a step is under the product when the way out of the mask there
points down by this much (cos to the vertical)."""
_LIT_DOWN_FROM = 0.055
"""...counted only where the share all told reaches ``lit_grain``'s ramp start (else 0: the
share under the product is no more, and the second pass is not paid for)."""


@dataclass(frozen=True)
class LitSteps:
    """Lit steps beyond a mask's outline (``_lit_steps``), on the box ``box`` of the frame."""
    box: tuple[slice, slice]
    hard: np.ndarray
    """0/1 uint8: the mask's main parts, on the box."""
    ys: np.ndarray
    xs: np.ndarray
    """The steps' pixels (box coordinates)."""
    ny: np.ndarray
    nx: np.ndarray
    """The way out of the mask at each step (unit vector)."""
    dist: np.ndarray
    """Each step's distance from the mask (px)."""


def _lit_steps(hard: np.ndarray, ev: Evidence) -> LitSteps | None:
    """The steps ``_lit_beyond`` counts (see there): product evidence beyond the outline
    with a lighter band between it and the outline, ending in a sharp step down."""
    h, w = hard.shape
    area = int(cv2.countNonZero(hard))
    if area == 0 or area == h * w:
        return None
    # Seen from the product's main parts only: a speck kept in a lit patch inside a cast
    # shadow (cast shadows 9400, the mug's handle seen through its shadow) has the patch
    # beyond its outline, lighter than the shadow around it.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    if n > 2:
        big = stats[:, cv2.CC_STAT_AREA] >= 0.1 * area
        big[0] = False
        hard = big[labels].astype(np.uint8)
        area = int(cv2.countNonZero(hard))
    reach = max(2.0 * _LIT_FROM, _LIT_REACH * area ** 0.5)
    # Only the product's surroundings matter (and the frame's edge stays an edge).
    box = _around(hard, int(reach) + 4)
    if box is None:
        return None  # (no part of 10 %: the lower part of a stool's mask, legs only)
    hard = hard[box]
    product, ratio, chroma, tol_all = (ev.product[box], ev.ratio[box], ev.chroma[box],
                                       ev.tol[box])
    h, w = hard.shape
    d = cv2.distanceTransform((hard == 0).astype(np.uint8), cv2.DIST_L2, 5)
    ys, xs = np.nonzero(product & (d >= _LIT_FROM) & (d <= reach))
    if not len(ys):
        return None
    gx = cv2.Sobel(d, cv2.CV_32F, 1, 0, ksize=3)[ys, xs]
    gy = cv2.Sobel(d, cv2.CV_32F, 0, 1, ksize=3)[ys, xs]
    norm = np.sqrt(gx * gx + gy * gy) + 1e-6
    nx, ny = gx / norm, gy / norm
    r = cv2.blur(ratio, (3, 3))
    ry = cv2.Sobel(r, cv2.CV_32F, 0, 1, ksize=3)[ys, xs]
    rx = cv2.Sobel(r, cv2.CV_32F, 1, 0, ksize=3)[ys, xs]
    lit = -(rx * nx + ry * ny) > 0.7 * (np.sqrt(rx * rx + ry * ry) + 1e-6)
    dist = d[ys, xs]

    def at(back: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pixel ``back`` px from each candidate towards the outline."""
        return (np.clip(np.rint(ys - back * ny).astype(np.intp), 0, h - 1),
                np.clip(np.rint(xs - back * nx).astype(np.intp), 0, w - 1))

    r_out = r[at(np.full(len(ys), -2.5, np.float32))]
    tol = tol_all[ys, xs]
    margin = np.maximum(0.04, 1.5 * tol)
    # A sharp step (a sole's edge), not a soft shadow's ramp, which goes on inwards (the lit
    # gap between a ring and its soft shadow, holes 9008 at 640²).
    step = r[at(np.full(len(ys), 2.5, np.float32))] - r_out
    lit &= step > 2.0 * np.abs(r[at(np.minimum(5.5, dist - 3.0))] - r_out - step)
    for back in (np.full(len(ys), 2.5, np.float32), 0.5 * (dist - 0.5), dist - 3.0):
        iy, ix = at(back)
        r_in = r[iy, ix]
        lit &= ((r_in - r_out > margin) & (hard[iy, ix] == 0) & (chroma[iy, ix] < 1.0)
                & (r_in < 1.0 + tol))
    return LitSteps(box, hard, ys[lit], xs[lit], ny[lit], nx[lit], dist[lit])


_LIT_FROM = 6.0
"""...from this many work px off the outline (the outline's own halo of evidence lies within
3-5 px of it, and a thinner band is not told from it)."""
_LIT_REACH = 0.35
"""How far beyond the outline ``_lit_beyond`` looks, in units of √(the product's area): the
sole of a sneaker is 0.2-0.25 of it."""


def _mirror_notches(img: np.ndarray, bg: np.ndarray, hard: np.ndarray,
                    sigma: float | None = None) -> tuple[float, float]:
    """Share of the product's area that a notch cut into one side of its silhouette took,
    judged against the silhouette's own mirror image: pixels outside the mask but inside its
    convex hull, open to the outside (not a hole), whose mirror image across the product's
    best vertical axis is product, and whose hue is nearer the mirrored product pixel's than
    the backdrop model's there (opened 3×3: no outline jitter). A cream label's shaded side
    cut out of a bottle on wood (textured 8014, IoU 0.92, confidence 0.99 before) and a
    white bottle's shoulder lost on a white sweep (white on white 8000, 0.925) are such
    notches; a mug's handle seen from the other side is not (its mirror image lies outside
    the hull), nor is the backdrop in a handle's hole (its hue is the backdrop's).

    Returns (that share, the white notch's share). On white on white the hue tells nothing
    (the product, its shaded side and the sweep are all near grey: a white bottle's lit neck
    lost whole read nearer the sweep's hue than its shaded mirror's, white on white 5106 at
    640², IoU 0.928, notch 0.002, said 0.98). The white notch (``sigma`` given; 0 without)
    counts the same candidates by brightness instead: darker than the backdrop model by 3
    noise units on a 5×5 mean (something is there, if faint; the sweep in a real notch is
    the model's level). 5106: 0.023 / 0.018 at 640² / 800²; good white cutouts of the
    tuning and fresh ranges read under 0.015."""
    x0, y0, bw, bh = cv2.boundingRect(hard)
    if bw < 8 or bh < 8:
        return 0.0, 0.0
    m = hard[y0:y0 + bh, x0:x0 + bw] > 0
    # The axis (in half columns, 2c) where the mask overlaps its mirror most: the sums of
    # the anti-diagonals of the columns' Gram matrix, within 15 % of the width of the centre.
    mf = m.astype(np.float32)
    flipped = (mf.T @ mf)[:, ::-1]
    span = max(2, int(0.15 * bw))
    offs = np.arange(-2 * span, 2 * span + 1)
    over = np.array([np.trace(flipped, offset=int(o)) for o in offs])
    c2 = bw - 1 - int(offs[int(over.argmax())])  # mirror of column j is c2 - j
    j = np.arange(bw)
    mj = c2 - j
    ok = (mj >= 0) & (mj < bw)
    cand = np.zeros_like(m)
    cand[:, j[ok]] = m[:, mj[ok]]
    cand &= ~m
    if not cand.any():
        return 0.0, 0.0
    cnt, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros(m.shape, np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(cnt))], 1)
    outside = np.pad((~m).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2)
    cand &= (hull > 0) & (outside[1:-1, 1:-1] == 2)
    cy, cx = np.nonzero(cand)
    if not len(cy):
        return 0.0, 0.0
    sub = cv2.blur(img[y0:y0 + bh, x0:x0 + bw], (3, 3))

    def hue(x: np.ndarray) -> np.ndarray:  # chromaticity, damped in the dark
        return x * (3.0 / (x.sum(1, keepdims=True) + 30.0))

    hp = hue(sub[cy, cx])
    near_mirror = (_max3(np.abs(hp - hue(sub[cy, c2 - cx])))
                   <= _max3(np.abs(hp - hue(bg[y0 + cy, x0 + cx]))))
    notch = np.zeros(m.shape, np.uint8)
    notch[cy[near_mirror], cx[near_mirror]] = 1
    notch = cv2.morphologyEx(notch, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    area = max(int(cv2.countNonZero(mf)), 1)
    white = 0.0
    if sigma is not None:
        lum = cv2.blur(img[y0:y0 + bh, x0:x0 + bw], (5, 5))[cy, cx].mean(1)
        dark = bg[y0 + cy, x0 + cx].mean(1) - lum > _WHITE_NOTCH * max(sigma, 0.8)
        wn = np.zeros(m.shape, np.uint8)
        wn[cy[dark], cx[dark]] = 1
        wn = cv2.morphologyEx(wn, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        white = float(cv2.countNonZero(wn) / area)
    return float(cv2.countNonZero(notch) / area), white


_WHITE_NOTCH = 3.0
"""Noise units under the backdrop (5×5 mean) at which a white notch's pixel is product."""


def _mirror_notch(img: np.ndarray, bg: np.ndarray, hard: np.ndarray) -> float:
    """``_mirror_notches``' first figure (the hue notch)."""
    return _mirror_notches(img, bg, hard)[0]


def _ambiguous_blob(inside: np.ndarray, amb_px: np.ndarray) -> float:
    """Share of the product's area in its largest thick (opened 5×5) blob of pixels that look
    like backdrop or shadow (``amb``'s pixels): a handle's hole holding the mug's shadow kept
    as product (framing 27, 9: IoU 0.90), not the scattered grey of a glossy sheen."""
    blob = cv2.morphologyEx((amb_px & inside).astype(np.uint8), cv2.MORPH_OPEN, _DISC5)
    n, _, st, _ = cv2.connectedComponentsWithStats(blob, connectivity=4)
    if n <= 1:
        return 0.0
    return float(st[1:, 4].max() / max(int(inside.sum()), 1))


_DISC5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def _backdrop_pockets(img: np.ndarray, hard: np.ndarray, ev: Evidence) -> float:
    """Share of the product's area in pockets of the backdrop kept inside the outline and
    open to the backdrop outside it: the gaps between a plant's leaves and stems, bridged by
    the closing (JPEG's colour bleed makes their edges product evidence, so they are neither
    ``bg_inside`` nor a thick ``amb_blob``). A pocket pixel has the backdrop's colour (chroma
    under 1, brightness within max(0.03, ``_POCKET_TOL`` × the ratio's noise) of the backdrop
    model), is reached from outside the mask through such pixels (opened 3×3: a 1-2 px
    contact along a glossy bottle's backdrop-grey highlight does not count) and lies over
    ``_POCKET_DEPTH`` px inside the outline (not the outline's own mixed pixels). A pocket
    counts when (a) it is not smoother than the backdrop around the product (half its pixels
    with a 5×5 local deviation of at least half the ring's median: a smooth sole of the
    table's colour on wood is product), (b) it opens onto the outside through at least
    ``_POCKET_MOUTH`` outline pixels with the backdrop's colour on both sides (a stretch of
    outline that is no edge at all) and (c) under ``_POCKET_EVIDENCE`` of it is product
    evidence. Novel plants (docs/OPS.md "Confidence: backdrop pockets"): 0.02-0.08 where the
    gaps were kept; good cutouts of the known shapes under 0.02 (tuning 0-44), except a
    bottle's cream label whose shaded side is a grey wood table's colour (textured 9104 at
    640², 0.09: said low, the known false alarm)."""
    if ev.tol is None or not hard.any():
        return 0.0
    box = _around(hard, 14)
    if box is None:
        return 0.0
    m = hard[box]
    inside = m > 0
    n_in = max(int(cv2.countNonZero(m)), 1)
    ratio, chroma, tol = ev.ratio[box], ev.chroma[box], ev.tol[box]
    bc_all = (chroma < 1.0) & (np.abs(ratio - 1.0) < np.maximum(0.03, _POCKET_TOL * tol))
    bc = cv2.morphologyEx((bc_all & inside).astype(np.uint8), cv2.MORPH_OPEN, _SQ3) > 0
    if ev.restored is not None and ev.restored[box].any():
        # A part given back on its own evidence (a light sole of the table's colour) is
        # product, and so is the rest of it that it did not reach (the sole's far end, of the
        # same colour and joined to it: textured 9422 at 640², 0.028 without this).
        rest = ev.restored[box]
        n, lab = cv2.connectedComponents(bc.astype(np.uint8), connectivity=8)
        touch = np.zeros(n, bool)
        touch[lab[cv2.dilate(rest.astype(np.uint8), _SQ3) > 0]] = True
        touch[0] = False
        bc &= ~touch[lab] & ~rest
    if not bc.any():
        return 0.0
    # Reached from outside: the outside (and the frame's edge, as the box is padded inside
    # the frame only where it can be) joined through backdrop-coloured pixels.
    passable = (bc | ~inside).astype(np.uint8)
    _, lab = cv2.connectedComponents(passable, connectivity=4)
    out_lab = np.zeros(int(lab.max()) + 1, bool)
    out_lab[lab[~inside]] = True
    out_lab[0] = False
    depth = cv2.distanceTransform(m, cv2.DIST_L2, 3)
    deep = out_lab[lab] & bc & (depth > _POCKET_DEPTH)
    if not deep.any():
        return 0.0
    # Each pocket, and what lies within its reach (the nearest pocket of each pixel).
    near_d, near = cv2.distanceTransformWithLabels((~deep).astype(np.uint8), cv2.DIST_L2, 3,
                                                   labelType=cv2.DIST_LABEL_CCOMP)
    nlab = int(near.max()) + 1
    lum = cv2.transform(img[box], _MEAN3)
    m1 = cv2.blur(lum, (5, 5))
    lstd = np.sqrt(np.maximum(cv2.blur(lum * lum, (5, 5)) - m1 * m1, 0))
    dout = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 3)
    ring = (dout >= 4) & (dout <= 12) & ~ev.product[box]
    ref = float(np.median(lstd[ring])) if ring.any() else 0.0
    area = np.bincount(near[deep], minlength=nlab)
    # (Half its pixels as textured as half the ring's median: its median, without a sort.)
    grain = (lstd[deep] >= 0.5 * ref).astype(np.float32)
    tex = np.bincount(near[deep], grain, minlength=nlab) >= 0.5 * area
    line = inside & (cv2.erode(m, _CROSS) == 0)
    open_line = line & bc_all & (cv2.dilate((~inside & bc_all).astype(np.uint8), _CROSS) > 0)
    mouth_px = open_line & (near_d <= _POCKET_DEPTH + 2)
    mouth = np.bincount(near[mouth_px], minlength=nlab)
    # Mostly not product evidence: the gaps' edges are (JPEG's bleed), their middles are not
    # (0.1-0.3 of a plant's pocket); a label's shaded side of the table's colour is, by its
    # faint tint (0.63, textured 8014, a cream label on a green bottle on wood).
    prod = np.bincount(near[deep], ev.product[box][deep].astype(np.float32), minlength=nlab)
    keep = tex & (mouth >= _POCKET_MOUTH) & (area > 0) & (prod < _POCKET_EVIDENCE * area)
    return float(area[keep].sum() / n_in)


_POCKET_DEPTH = 2.0
"""A backdrop pocket's pixels lie over this many work px inside the outline."""
_POCKET_MOUTH = 6
"""...and the pocket opens onto the outside through this many outline pixels at least."""
_POCKET_TOL = 2.0
"""A pocket's brightness lies within this many times the ratio's noise of the backdrop's."""
_POCKET_EVIDENCE = 0.5
"""...and under this share of its pixels are product evidence."""
_SQ3 = np.ones((3, 3), np.uint8)


# The calibrated confidence (calibration pass, 5 Dec 2026; docs/OPS.md "Confidence,
# calibrated" and "Confidence, re-fitted"). Each term is a doubt in 0..1 (a ramp of one
# signal from where it starts to where it is full); the confidence is a logistic of their
# weighted sum:
#     confidence = 1 / (1 + exp(-(_CONF_BIAS - sum(weight * doubt))))
# i.e. the chance the cutout is good (IoU >= 0.95). Bias and weights *fitted* (re-fitted by
# white12 on OPS 17's cutouts, docs/OPS.md "Confidence re-fitted on OPS 17") on the seeds
# 0-44, 9000-9019, 9100-9119, 9200-9219 at 640² and 800² and 9400-9440 at 640², 800² and
# 1500² (3312 cutouts, 16 under IoU 0.93; L2-penalised logistic regression, weights held
# >= 0, cutouts under IoU 0.93 weighted 4x and 0.93-0.95 2x; ``bench/fit_confidence.py``
# refits them from the evaluation tool's rows), rounded; the terms marked "by hand" never
# (``matte_dark`` 3 times: kept at its fit of the eighth pass) fired on those cases and are
# set so that a full doubt alone says ``low`` (a part left out, a speck, a product that is
# the frame, a glass bottle's dark walls given back).
# Re-fitted again by said13 on OPS 21's cutouts with the lit sole (4758, 14 under IoU 0.93):
# that fit said three more misses ``high``, so these weights were kept (docs/OPS.md
# "Confidence re-fitted on OPS 21 with the lit sole"); only the lit band's ramp moved.
# Per term: (doubt, where its ramp starts, where it is full, weight).
# stool18 (OPS 49) re-weighed the doubts of a cutout whose gaps between thin parts were cut
# (``enclosed``), on novel stools 400-599 at 640² with ``_trim_gap_rims`` (checked on 600-699):
# the cut alone 4.0 -> 3.0, ``bg_inside`` off the outline there (``bg_inside_core``), and
# ``enclosed_unsup``; docs/OPS.md "Stools: the floor left round the gaps".
_CONF_BIAS = 4.72
_GRAIN_SIGMA = 2.5
"""``lit_grain`` counts from a backdrop noise over this (levels), fully from one level more."""
_ENC_W = 3.0
_ENCU_A, _ENCU_B, _ENCU_W = 0.015, 0.05, 4.0
_CONF_TERMS: tuple[tuple[str, float, float, float], ...] = (
    ("matte_dark", 0.03, 0.3, 5.81),  # by hand: dark edge the matte gave back (glass walls)
    ("misfit", 0.03, 0.4, 0.96),      # border the backdrop model does not explain
    ("touch", 0.01, 0.2, 1.64),       # runs off the frame's edge
    ("amb", 0.05, 0.5, 0.00),         # looks like backdrop or shadow (not white on white)
    ("white", 0.5, 1.0, 0.56),        # white on white: closed from its outline
    ("white_weak", 0.1, 0.3, 1.09),   # ...and the outline is faint (white on white only)
    ("unsup", 0.02, 0.3, 4.29),       # outline with the same colour on both sides
    ("bg_inside", 0.015, 0.1, 3.09),  # plain backdrop filled in (not white on white)
    ("notch", 0.004, 0.03, 5.02),     # a notch its own mirror image does not have
    ("white_notch", 0.012, 0.02, 3.0),  # by hand: ...on white, by brightness (not hue)
    ("amb_blob", 0.02, 0.1, 1.19),     # a thick blob of backdrop or shadow kept (not white)
    ("smooth", 0.08, 0.33, 6.0),      # by hand: smooth beside it on a textured backdrop
    ("lit_beyond", 0.07, 0.13, 6.0),  # by hand: a lit band beyond the outline (a part left out)
    ("lit_grain", _LIT_DOWN_FROM, 0.085, 6.0),  # by hand: ...under it, on a grained table
    ("tiny", 0.0, 0.015, 6.0),        # by hand: under 2 % of the frame (0.5 %: full)
    ("huge", 0.7, 0.9, 6.0),          # by hand: most of the frame
    ("enclosed", 0.02, 0.08, _ENC_W),  # by hand: shadowed gaps cut from between thin parts
    ("enclosed_unsup", _ENCU_A, _ENCU_B, _ENCU_W),  # ...and outline with floor on both sides
    ("pocket", 0.005, 0.03, 5.0),     # by hand: backdrop kept in gaps open to the outside
    ("soft_rim", 1.4, 1.7, 3.0),      # by hand: the matte left a wide rim part-transparent
    ("white_left", 0.015, 0.06, 4.0),  # by hand: lifted white faces left out (white on white)
    ("white_apart", 0.005, 0.03, 4.0),  # by hand: white on white in pieces
    ("soft_shadow", 0.12, 0.22, 3.0),  # by hand: a soft-edged shadow kept (white on white)
    ("shadow_lit", 0.5, 1.0, 3.0),    # by hand: a blob of shadow kept, a lit band beyond it
    ("white_above", 0.5, 1.2, 5.0),   # by hand: a band off the sweep goes on above (white)
)


def _conf_doubts(sig: dict[str, float]) -> dict[str, float]:
    """Each term's doubt (0..1) from the raw signals."""
    white = sig.get("white", 0.0)
    # Where gaps between thin parts were cut (``enclosed``, its ramp), plain backdrop filled in
    # is counted off the outline: a right stool's legs, 4-5 work px across, have mixed rims that
    # read as backdrop, 0.03-0.06 of its area (0.002-0.006 off the outline); a hole kept
    # closed lies inside. Unchanged elsewhere (no ``enclosed`` on the known shapes' tuning).
    enc = float(np.clip((sig.get("enclosed", 0.0) - 0.02) / 0.06, 0.0, 1.0))
    bgi = sig.get("bg_inside", 0.0)
    if enc > 0:
        bgi += (sig.get("bg_inside_core", bgi) - bgi) * enc
    raw = {"matte_dark": sig.get("matte_dark", 0.0), "misfit": 1.0 - sig.get("fit", 1.0),
           "touch": sig.get("touch", 0.0), "amb": sig.get("amb", 0.0) * (1 - white),
           "white": white, "white_weak": sig.get("weak_outline", 0.0) * white,
           "unsup": sig.get("unsup", 0.0) * (1 - white),
           "bg_inside": bgi * (1 - white),
           "smooth": sig.get("smooth", 0.0), "notch": sig.get("notch", 0.0),
           "white_notch": sig.get("white_notch", 0.0) * white,
           "lit_beyond": sig.get("lit_beyond", 0.0),
           # On a grained table (the backdrop's noise 3+ levels) a lit step must clear 1.5x
           # the grain's noise in the ratio (``_lit_steps``): a sole's lower edge is found in
           # a few places only (light stone: 9 % of the outline, textured 19012 at 640², IoU
           # 0.685, said high at 0.955). Counted under the product only (``lit_down``): a
           # plant's lit steps on wood lie round its leaves (novel textured 422 / 454, right
           # cutouts: 0.061 / 0.067 all told, 0.018 / 0.047 under it). Set by hand between
           # the two (19012: 0.087 under it): a narrow margin, read from one miss.
           "lit_grain": sig.get("lit_down", 0.0) * float(
               np.clip(sig.get("sigma", 0.0) - _GRAIN_SIGMA, 0.0, 1.0)),
           "amb_blob": sig.get("amb_blob", 0.0) * (1 - white),
           "tiny": max(0.0, 0.02 - sig.get("area", 0.1)), "huge": sig.get("area", 0.1),
           "enclosed": sig.get("enclosed", 0.0),
           "enclosed_unsup": sig.get("unsup", 0.0) * enc * (1 - white),
           "pocket": sig.get("pocket", 0.0) * (1 - white),
           "soft_rim": sig.get("soft_rim", 0.0) * (1 - white),
           "white_left": sig.get("white_left", 0.0) * white,
           "white_apart": sig.get("white_apart", 0.0) * white,
           "soft_shadow": sig.get("soft_shadow", 0.0) * white,
           "white_above": sig.get("white_above", 0.0) * white,
           # Both at once (not white): a blob of shadow kept (``amb_blob`` over 0.04) and a
           # lit band beyond the outline (``lit_beyond`` over 0.015): a mug's soft cast
           # shadow kept beside its base, the sweep lighter between it and the rest of the
           # shadow (cast shadows 5516 and 10459 at 640², IoU 0.89 / 0.92, said `high`).
           # Alone, each fires on right cutouts (a dark box's blob, a ring's lit hole).
           "shadow_lit": min(sig.get("lit_beyond", 0.0) / 0.03,
                             sig.get("amb_blob", 0.0) / 0.08) * (1 - white)}
    return {name: float(np.clip((raw[name] - a) / (b - a), 0.0, 1.0))
            for name, a, b, _ in _CONF_TERMS}


def _confidence_from(sig: dict[str, float]) -> tuple[float, tuple[str, ...]]:
    """The calibrated confidence (0..1) of a classical cutout from its signals, and what
    lowered it, in words, the largest doubt first (``_CONF_TERMS``). White on white is always
    said, even when the confidence stays high."""
    if sig.get("area", 1.0) <= 0.0:
        return 0.0, ("no product found",)
    doubts = _conf_doubts(sig)
    weights = {name: wt for name, _, _, wt in _CONF_TERMS}
    z = _CONF_BIAS - sum(weights[k] * d for k, d in doubts.items())
    conf = 1.0 / (1.0 + float(np.exp(-z)))
    said = {
        "matte_dark": lambda: f"{sig['matte_dark']:.0%} of the edge is dark pixels the matte "
                              "gave back (glass walls?): the outline may be too tight",
        "misfit": lambda: f"backdrop model explains {sig['fit']:.0%} of the border",
        "touch": lambda: f"product runs off the frame's edge ({sig['touch']:.0%} of it)",
        "amb": lambda: f"{sig['amb']:.0%} of the product looks like backdrop or shadow",
        "white": lambda: "white on white: the outline was closed from faint edges",
        "white_weak": lambda: f"{sig['weak_outline']:.0%} of the outline is faint",
        "unsup": lambda: f"{sig['unsup']:.0%} of the outline has the same colour on both sides",
        "bg_inside": lambda: f"{sig['bg_inside']:.0%} of the product is plain backdrop filled "
                             "in (a hole kept closed?)",
        "notch": lambda: f"a notch of {sig['notch']:.0%} of the product is cut into one side "
                         "that the other side does not have: a part may be missing",
        "white_notch": lambda: f"a notch of {sig['white_notch']:.0%} of the product, faintly "
                               "darker than the backdrop, is cut into one side that the other "
                               "side does not have: a white part may be missing",
        "amb_blob": lambda: f"a blob of {sig['amb_blob']:.0%} of the product looks like "
                            "backdrop or shadow (a hole or shadow kept?)",
        "smooth": lambda: f"{sig['smooth']:.0%} of the product's surroundings are smooth where "
                          "the backdrop is textured: a part of the product may be missing",
        "lit_beyond": lambda: f"a light band runs beyond {sig['lit_beyond']:.0%} of the "
                              "outline, a sharp step away from it: a part of the product (a "
                              "sole, a face of the backdrop's colour) may be missing",
        "lit_grain": lambda: f"a light band runs under {sig['lit_down']:.0%} of the outline "
                             "on a grained table, a step past its grain: a part of the "
                             "product (a sole) may be missing",
        "tiny": lambda: f"product covers only {sig['area']:.1%} of the frame",
        "huge": lambda: f"product covers {sig['area']:.0%} of the frame",
        "enclosed": lambda: f"{sig['enclosed']:.0%} of the region was the backdrop in shadow "
                            "between thin parts (legs, a ring), cut: such gaps and the rims "
                            "of thin parts are often kept in part",
        "enclosed_unsup": lambda: f"{sig['unsup']:.0%} of the outline has the backdrop's colour "
                                  "on both sides, round gaps cut from between thin parts: floor "
                                  "may be kept along them",
        "soft_rim": lambda: f"the edge is part-transparent {sig['soft_rim']:.1f} work px deep on "
                            "average: a light rim or frame round a dark part (sunglasses' "
                            "frame) may have been left out",
        "white_left": lambda: f"faintly lifted white faces of {sig['white_left']:.0%} of the "
                              "product's area lie apart from it, left out: a white part (a "
                              "headband) may be missing",
        "white_apart": lambda: f"the white product came out in pieces ({sig['white_apart']:.0%} "
                               "of it apart from the largest): a white part joining them (a "
                               "headband's side) may be missing",
        "white_above": lambda: f"straight above the product the backdrop stands "
                               f"{sig['white_above']:.1f} levels off the backdrop beside it: a "
                               "white part going on up (a strap) may be missing",
        "soft_shadow": lambda: f"{sig['soft_shadow']:.0%} of the outline runs along shadow with "
                               "no sharp edge: a cast shadow may have been kept",
        "shadow_lit": lambda: f"a blob of {sig['amb_blob']:.0%} of the product looks like shadow, "
                              "with a lit band beyond the outline: a cast shadow may have been "
                              "kept",
        "pocket": lambda: f"{sig['pocket']:.0%} of the product is the backdrop's colour in gaps "
                          "open to the backdrop outside (between leaves, stems, legs): the "
                          "gaps may have been kept",
    }
    cost = sorted(((weights[k] * d, k) for k, d in doubts.items() if d > 0), reverse=True)
    why = [said[k]() for c, k in cost if (c >= 0.3 or k == "white") and not (
        k == "lit_beyond" and weights["lit_grain"] * doubts["lit_grain"] >= 0.3)]
    return round(conf, 3), tuple(why)


def _smooth_beside(img: np.ndarray, hard: np.ndarray, band: int, sigma: float) -> float:
    """Fraction of a ring 3–8 px outside the product (inside the frame's border band) that
    is smooth (local standard deviation under 0.4× the backdrop's) where the backdrop in the
    same rows is textured (wood grain, linen, stone: a median local deviation over
    max(2.5, 2 σ) levels, from pixels 12+ px away from the product). The expectation is per
    row, so a smooth wall above a textured table is compared with the wall. A smooth
    region beside the product on a textured backdrop is a part of the product the cutout
    left out (or a smooth object it did not expect)."""
    h, w = hard.shape
    if not hard.any() or hard.all():
        return 0.0
    d_out = cv2.distanceTransform((hard == 0).astype(np.uint8), cv2.DIST_L2, 3)
    ring = (d_out >= 3) & (d_out <= 8)
    ring[:band], ring[h - band:], ring[:, :band], ring[:, w - band:] = False, False, False, False
    rows = np.nonzero(ring.any(1))[0]
    if ring.sum() < 20:
        return 0.0
    # The rows the ring spans, and the backdrop up to 48 px either side of it in them.
    cols = np.nonzero(ring.any(0))[0]
    r0, r1 = rows[0], rows[-1] + 1
    c0, c1 = max(band, cols[0] - 48), min(w - band, cols[-1] + 49)
    lum = cv2.transform(img[r0:r1, c0:c1], _MEAN3)
    m1 = cv2.blur(lum, (5, 5))
    lstd = np.sqrt(np.maximum(cv2.blur(lum * lum, (5, 5)) - m1 * m1, 0))
    far = d_out[r0:r1, c0:c1] > 12
    enough = far.sum(1) >= 20
    exp = np.zeros(r1 - r0, np.float32)
    if enough.any():
        exp[enough] = _row_median(lstd[enough], far[enough])
    e = exp[:, None]
    odd = ring[r0:r1, c0:c1] & (e > max(2.5, 2.0 * sigma)) & (lstd < 0.4 * e)
    return float(odd.sum() / ring.sum())


def _row_median(vals: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Per row, the median of ``vals`` where ``keep`` (every row keeps some): the values
    ``np.nanmedian`` gives with the others set to NaN — the mean of the two middle values
    for an even count, (x + x) / 2 = x for an odd one, as numpy's masked median adds them —
    without its masked-array machinery (1.7 → 0.3 ms on a 120 × 250 window)."""
    s = np.sort(np.where(keep, vals, np.nan), axis=1)  # NaN sorts last
    n = np.count_nonzero(keep, axis=1)[:, None]
    hi = n // 2
    lo = np.where(n % 2 == 1, hi, hi - 1)
    return ((np.take_along_axis(s, lo, 1) + np.take_along_axis(s, hi, 1)) / 2)[:, 0]


_DISC11 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
# Around a smooth part, the backdrop's median texture relative to its rows' (the 80th
# percentile): 0.94-2.4 around the labels and the sole it was made for, 0.21-0.27 on a plain
# sweep whose rows a cast shadow's edge called textured (cast_shadows 7000).
_TEXTURE_AROUND = 0.5


# A smooth part of the product lies along it: none of it is farther from the product than
# a few times its own half-thickness (a sole under a sneaker: about 2-3×; a label's shaded
# half between the glass above and below it: 1-2×).
_RUN_OFF = 6.0


def _runs_off(away: np.ndarray, comp: np.ndarray, half: float) -> bool:
    """A smooth part that runs off from the product, far past its own thickness.

    ``away`` is each pixel's distance from the product over the part's box, ``comp`` the
    part there and ``half`` its half-thickness (its inner distance's maximum). The wood of
    a table just under the horizon is seen at a glancing angle, its grain squeezed into
    smooth streaks: such a streak touching a sneaker's heel at one end ran 88 work px
    along the horizon at 5.5 px half-thickness (16×), and was kept as product (textured
    10367 at 640²: IoU 0.858).
    """
    return float(away[comp > 0].max()) > _RUN_OFF * half


def _smooth_parts(img: np.ndarray, hard: np.ndarray, band: int, min_area: float,
                  cast: np.ndarray | None = None) -> np.ndarray:
    """Add back a smooth part of the product that a textured table took for itself.

    On wood, linen or stone the backdrop is textured everywhere, and so are its shadows (a
    shadow scales the grain, so the grain's size relative to the brightness stays). A part of
    the product whose colour is near the table's (a cream label on a green bottle, a white
    sole under a sneaker, both on white-washed wood) lights no colour evidence, and its own
    outline against the grain is lost in the grain's edges, so it was given back: a hole
    through a bottle, a shoe without its sole. But it is *smooth* where the table is not.
    Per row, the backdrop's texture is the 80th percentile of the local deviation of the
    high-passed brightness (relative to the brightness) over pixels 13+ px from the product,
    in the whole row (a smooth wall above the table is then compared with the wall); a row is
    textured over 3 levels. A connected smooth region (under 0.3× its rows' texture, in
    textured rows) is product when it

    * borders the product over a fifth of its outline or more (not a smooth patch nearby),
    * is thick (10+ work px across: thin smooth strips run along seams and the horizon),
    * has textured backdrop around it (not a plain sweep whose rows a shadow's edge called
      textured: ``_TEXTURE_AROUND``),
    * stays inside the frame's border band, and is no speck,
    * lies in rows whose backdrop is textured by its median too, away from the product and
      from the cast shadow ``_drop_cast_shadow`` just gave back (``cast``): not a plain
      sweep whose 80th percentile a hard shadow's edges decided (``_plain_rows``).
    """
    h, w = hard.shape
    box = _around(hard, 48)
    if box is None:
        return hard
    rows = box[0]
    hr = hard[rows]
    lum = cv2.transform(img[rows], _MEAN3)
    hp = lum - cv2.GaussianBlur(lum, (0, 0), 1.5)
    lstd = np.sqrt(np.maximum(cv2.blur(hp * hp, (5, 5)), 0.0))  # the box sum may round below 0
    far = cv2.dilate(hr, np.ones((25, 25), np.uint8)) == 0
    far[:, :band] = False
    far[:, w - band:] = False
    # Per row, the far pixels' 80th percentile (every other column is plenty): not the
    # median, which the smooth part itself decides where it spans half the row or more
    # (a sole as wide as the sneaker at 800²: its lower half was lost). Each row is sorted
    # with the near pixels pushed to the end.
    far = far[:, ::2]
    cnt = far.sum(1)
    enough = cnt >= 10
    if not enough.any():
        return hard
    q80 = (np.maximum(cnt - 1, 0) * 4) // 5
    pick = np.arange(hr.shape[0])
    exp_abs = np.where(far, lstd[:, ::2], np.inf)
    exp_abs.sort(axis=1)
    exp_abs = np.where(enough, exp_abs[pick, q80], 0.0).astype(np.float32)
    # Textured: a fine texture over 3 levels. Not measured in units of the backdrop
    # model's noise: on a board that *is* the grain (textured 10, a bottle on wood), the
    # fit's residual is the grain itself (σ 7.3), and a label's shaded half was lost. A
    # photo's sensor noise is no risk here: it is on the product's smooth parts as well.
    textured = (exp_abs > 3.0).astype(np.uint8)[:, None]
    if not textured.any():
        return hard
    rel = lstd / np.maximum(cv2.blur(lum, (5, 5)), 8.0)
    exp_rel = np.where(far, rel[:, ::2], np.inf)
    exp_rel.sort(axis=1)
    exp_rel = np.where(enough, exp_rel[pick, q80], 0.0).astype(np.float32)
    # A seam or a light stripe of the grain leaves a row's texture low: gaps of a few rows
    # inside a textured plane are filled from the rows either side (not past its ends).
    textured = cv2.morphologyEx(textured, cv2.MORPH_CLOSE, np.ones((9, 1), np.uint8))[:, 0] > 0
    exp_rel = cv2.dilate(exp_rel[:, None], np.ones((9, 1), np.uint8))[:, 0]
    # Smooth: under 0.3 of the 80th percentile (about 0.4 of the grain's median).
    smooth = textured[:, None] & (rel < 0.3 * exp_rel[:, None]) & (hr == 0)
    smooth[:, :box[1].start] = False
    smooth[:, box[1].stop:] = False
    n, lab, st, _ = cv2.connectedComponentsWithStats(smooth.astype(np.uint8), connectivity=4)
    if n <= 1:
        return hard
    # A strong step's high-pass and the 5×5 window reach up to six pixels past the product's
    # edge: a part right next to it begins that far off.
    near = cv2.dilate(hr, np.ones((13, 13), np.uint8)) > 0
    out = hard.copy()
    ob = out[rows]
    oy = rows.start
    k5 = np.ones((5, 5), np.uint8)
    away = None  # each pixel's distance from the product, measured once a part is judged
    for i in range(1, n):
        x, y, cw, ch, area = st[i]
        if (area < min_area or oy + y <= band or x <= band or oy + y + ch >= h - band
                or x + cw >= w - band):
            continue
        comp = (lab[y:y + ch, x:x + cw] == i).astype(np.uint8)
        half = float(cv2.distanceTransform(np.pad(comp, 1), cv2.DIST_L2, 3).max())
        if half < 5.0:
            continue
        if away is None:
            away = cv2.distanceTransform((hr == 0).astype(np.uint8), cv2.DIST_L2, 3)
        if _runs_off(away[y:y + ch, x:x + cw], comp, half):
            continue
        y0, x0 = max(y - 8, 0), max(x - 8, 0)
        y1, x1 = min(y + ch + 8, hr.shape[0]), min(x + cw + 8, w)
        grown = np.zeros((y1 - y0, x1 - x0), np.uint8)
        grown[y - y0:y - y0 + ch, x - x0:x - x0 + cw] = comp
        ring = (cv2.dilate(grown, k5) > 0) & (lab[y0:y1, x0:x1] != i)
        if (ring & near[y0:y1, x0:x1]).sum() < 0.2 * max(int(ring.sum()), 1):
            continue
        # The backdrop around it must be textured as its rows say. A row's texture is its
        # far pixels' 80th percentile, which a sharp cast shadow's edge running along the row
        # decides on a plain sweep (the edge's pixels, not the plain around them): there the
        # "smooth part" is the plain sweep itself, as smooth as the sweep in every other row.
        # Around a real smooth part the table goes on with its grain.
        outer = ((cv2.dilate(grown, _DISC11) > 0) & ~(cv2.dilate(grown, k5) > 0)
                 & ~near[y0:y1, x0:x1] & (hr[y0:y1, x0:x1] == 0))
        if outer.sum() >= 20:
            ratio = float(np.median(rel[y0:y1, x0:x1][outer]
                                    / np.maximum(exp_rel[y0:y1, None], 1e-6)
                                    .repeat(x1 - x0, 1)[outer]))
            if ratio < _TEXTURE_AROUND:
                continue
        if _plain_rows(grown, (y0, x0), lstd, away, None if cast is None else cast[rows]):
            continue
        # The windows (the high-pass's reach and the 5×5 box) keep the smooth part about
        # three pixels off its own outline and off the product's edge next to it: grow it
        # back by that, and close the seam between it and the product.
        grown = cv2.dilate(grown, _DISC7)
        sub = ob[y0:y1, x0:x1]
        both = cv2.morphologyEx(sub | grown, cv2.MORPH_CLOSE, _DISC7)
        sub |= both & cv2.dilate(grown, _DISC7)
    return out


def _plain_rows(part: np.ndarray, at: tuple[int, int], lstd: np.ndarray, away: np.ndarray,
                cast: np.ndarray | None) -> bool:
    """The backdrop in the rows of a smooth part (``part``, 0/1, a window at ``at`` of the
    rows' arrays ``lstd`` and ``away``) is plain: away from the product (12+ px) and from the
    cast shadow just given back (``cast``, 5+ px), its median local deviation at most
    ``_PLAIN_MEDIAN``. The rows were called textured by their 80th percentile (over 3
    levels), which a hard shadow's sharp edges running along them decide on a plain sweep:
    the shadow, or the lit sweep inside a headphone band's shadow loop, was then taken as a
    smooth part of the product (known cast shadows 16055, 16130 at 640²: IoU 0.942, 0.932,
    said high; novel 723, 548: the loop's inside). Wood's median is its grain (3.7-5.3)."""
    y0, x0 = at
    ph = part.shape[0]
    free = away[y0:y0 + ph] > 12
    if cast is not None:
        free &= ~(cv2.dilate(cast[y0:y0 + ph].astype(np.uint8), np.ones((11, 11), np.uint8)) > 0)
    if free.sum() < 20:
        return False
    return float(np.median(lstd[y0:y0 + ph][free])) <= _PLAIN_MEDIAN


_PLAIN_MEDIAN = 1.0
"""``_plain_rows``: a plain sweep's median local deviation is its noise (0.5-0.6 levels on
the cast-shadow sweeps); wood's is its grain (3.7-5.3)."""


def _outline_contrast(img: np.ndarray, hard: np.ndarray, sigma: float,
                      skip: np.ndarray | None = None) -> tuple[np.ndarray | None, float]:
    """(per outline pixel, the largest channel difference between the colour 2 px inside and
    2 px outside, spread along the outline; the "same colour" threshold max(10, 4 σ)), or
    (None, thr) when there is too little outline inside the frame. The share under the
    threshold (``unsup`` in ``_confidence_signals``) is an outline drawn through the backdrop
    (a piece of a wood table kept with the product, a white face given back), not along an
    edge. The outline within ``skip`` is left out."""
    h, w = hard.shape
    thr = max(10.0, 4.0 * sigma)
    if not hard.any() or hard.all():
        return None, thr
    k = np.ones((5, 5), np.uint8)
    inner = cv2.erode(hard, k) > 0
    outer = cv2.dilate(hard, k) == 0
    line = (hard > 0) & (cv2.erode(hard, _CROSS) == 0)
    line[:3], line[-3:], line[:, :3], line[:, -3:] = False, False, False, False
    if skip is not None:
        line &= ~skip
    ys, xs = np.nonzero(line)
    if len(ys) < 8:
        return None, thr
    box = _around(hard, 8)
    sub_in, den_in = _spread_parts(img[box], inner[box], 2.0)
    sub_out, den_out = _spread_parts(img[box], outer[box], 2.0)
    oy, ox = box[0].start, box[1].start
    yy, xx = ys - oy, xs - ox
    ok = (den_in[yy, xx] > 0.02) & (den_out[yy, xx] > 0.02)
    if ok.sum() < 8:
        return None, thr
    cin = sub_in[yy, xx][ok] / den_in[yy, xx][ok][:, None]
    cout = sub_out[yy, xx][ok] / den_out[yy, xx][ok][:, None]
    return _max3(np.abs(cin - cout)), thr


def _shadow_coloured(chroma: np.ndarray, ratio: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """Pixels coloured like a shadow on the backdrop: the backdrop's chroma (under half the
    product threshold), darker beyond the noise but not black. Shared by ``_drop_cast_shadow``
    (its candidates) and ``_fill_sandwiched`` (what is not solid product)."""
    return (chroma < 0.5) & (ratio > 0.25) & (ratio < 1 - tol)


def _clearly_product(chroma: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """Pixels that are clearly product whatever the shadow rules say: off the backdrop's
    colour (chroma over the product threshold) or black (a shadow's ragged rim is neither).
    Shared by ``_drop_cast_shadow``, ``_drop_enclosed_shadow`` and ``_drop_framed_backdrop``."""
    return (chroma >= 1.0) | (ratio <= 0.25)


def _drop_cast_shadow(m: np.ndarray, ev: Evidence) -> np.ndarray:
    """Give back a cast shadow that joined the product (a hard shadow's sharp outline is edge
    evidence, and what it encloses was filled as a hole).

    A part of the region that has the backdrop's chroma and is only darker (not black),
    touches the clear backdrop outside along part of its outline, and lies on the floor (in
    the lower part of the region, as a shadow thrown on the table does) is shadow. A grey or
    white product's faces have the same colour but reach up the product: they are kept."""
    rows = np.nonzero(m.any(1))[0]
    if not len(rows):
        return m
    top, bottom = rows[0], rows[-1]
    height = bottom - top + 1
    shadowy = _shadow_coloured(ev.chroma, ev.ratio, ev.tol) & (m > 0)
    shadowy = cv2.morphologyEx(shadowy.astype(np.uint8), cv2.MORPH_OPEN, _CROSS)
    split = _split_dark_faces(shadowy, ev, top + 0.55 * height, 0.01 * int(m.sum()))
    split = _split_thin_legs(split, ev, top + 0.55 * height, 0.01 * int(m.sum()))
    cut = (shadowy > split) if split is not shadowy else None
    shadowy = split
    n, labels, stats, _ = cv2.connectedComponentsWithStats(shadowy, connectivity=4)
    if n <= 1:
        return m
    total = int(m.sum())
    outside = cv2.dilate((m == 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    # Clearly product: not the backdrop's colour, or black (a shadow's ragged rim is not).
    solid = (m > 0) & _clearly_product(ev.chroma, ev.ratio)
    out = m.copy()
    removed = 0
    # Most components are noise specks: pick the candidates before looking at any one.
    cands = np.nonzero((stats[:, cv2.CC_STAT_AREA] >= 0.01 * total)
                       & (stats[:, cv2.CC_STAT_TOP] >= top + 0.55 * height))[0]
    for i in cands[cands > 0]:
        x, y, w, h, area = stats[i]
        comp = labels[y:y + h, x:x + w] == i
        ring = cv2.dilate(comp.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~comp
        touch = float((ring & outside[y:y + h, x:x + w]).sum()) / max(int(ring.sum()), 1)
        if touch < 0.2:
            continue
        # A shadow lies on the floor: nothing of the product stands under it. A part with
        # the product right under most of its columns is a face of the product (the top of a
        # black case with a grey sheen, on a grey sweep, rising above the case's body).
        if _product_under(comp, solid[y:, x:x + w], h) >= 0.5:
            continue
        # ...or under a ramp that only darkens into it: a sheen's lower flank (thin parts
        # 3000 / 9113 at 800², a black case's grey band 4-6 px over its body: IoU 0.74).
        if _darkens_into(comp, m[y:, x:x + w] > 0, solid[y:, x:x + w], ev.ratio[y:, x:x + w],
                         ev.tol[y:, x:x + w], h) >= 0.5:
            continue
        # ...or the lower part of a black product's face that only crosses the "black"
        # line because the backdrop darkens under it (a dark box on a sweep's floor).
        if _face_goes_on(comp, m[:y + h, x:x + w] > 0, solid[:y + h, x:x + w], ev, (y, x)):
            continue
        # ...or the lower part of a dark cylinder's flank (a chrome bottle's side), which
        # shades across its width but not down it, going on up the product.
        if _flank_goes_on(comp, m[:y + h, x:x + w] > 0, solid[:y + h, x:x + w], ev, (y, x)):
            continue
        if removed + area > 0.4 * total:
            continue
        out[y:y + h, x:x + w][comp] = 0
        if cut is not None:
            _drop_step_shell(out, comp, cut, ev, (y, x))
        removed += area
    if removed:
        out = cv2.morphologyEx(out, cv2.MORPH_OPEN, _CROSS)
    return out


def _drop_floor_line(m: np.ndarray, ev: Evidence) -> np.ndarray:
    """White on white: give back the upper half of a soft shadow line on the floor that the
    outline's closing kept under the product (the contact shadow under a pair of white
    headphones, a thin dark line joining the two ear cups: its upper edge is a step the
    closing follows, its core is where the mask ends).

    Column by column, the mask's lowest run is such a line when it is short
    (``_FLOOR_LINE_REACH`` of the work side), has the backdrop straight above it, the
    backdrop's chroma and no black, and brightens upwards by ``_FLOOR_LINE_RISE`` noise units
    from its bottom to its top (the line's core at the bottom, the sweep above it). A white
    product's own lowest run is a face: long (a box, a bottle, a cup), or flat or darkening
    upwards (a lamp's dark base, a rim). Only a stretch of such columns
    ``_FLOOR_LINE_SPAN`` of the mask's width or wider, with taller product at both ends (the
    two cups it joins), is cut (a rounded base's tips are a few columns; a white strap's kept
    foot runs off into the sweep at one end)."""
    h, w = m.shape
    cols, low = _lowest(m)
    if len(cols) < 2:
        return m
    reach = max(3, int(round(_FLOOR_LINE_REACH * max(h, w))))
    # The run's length: the first row upwards from the column's lowest pixel that is not mask.
    run = np.zeros(len(cols), np.int32)
    going = np.ones(len(cols), bool)
    for i in range(reach + 1):
        y = low - i
        inside = (y >= 0) & m[np.maximum(y, 0), cols].astype(bool)
        going &= inside
        run += going
        if not going.any():
            break
    tall = going.copy()
    ok = ~going & (run >= 1)
    if not ok.any():
        return m
    # Each short run's pixels: no product colour, no black, brightening upwards.
    idx = np.arange(reach)[None, :]
    ys = low[:, None] - idx
    within = ok[:, None] & (idx < run[:, None])
    yc = np.clip(ys, 0, h - 1)
    xc = np.broadcast_to(cols[:, None], yc.shape)
    bad = within & ((ev.chroma[yc, xc] >= 0.5) | (ev.ratio[yc, xc] <= 0.25))
    ok &= ~bad.any(1)
    top_r = ev.ratio[np.clip(low - run + 1, 0, h - 1), cols]
    ok &= top_r - ev.ratio[low, cols] >= _FLOOR_LINE_RISE * ev.tol[low, cols]
    if not ok.any():
        return m
    # Stretches of neighbouring columns.
    edge = np.diff(np.concatenate(([0], ok.astype(np.int8), [0])))
    starts, ends = np.nonzero(edge == 1)[0], np.nonzero(edge == -1)[0]
    wide = _FLOOR_LINE_SPAN * (cols[-1] - cols[0] + 1)
    out = None
    for a, b in zip(starts, ends, strict=True):
        # (Neighbouring in the list and in the frame: the mask may skip columns.)
        if cols[b - 1] - cols[a] + 1 != b - a or b - a < wide:
            continue
        # Between two parts of the product standing on the floor (the ear cups): the stretch
        # of short runs it lies in ends at a taller column of the product on both sides, on
        # the floor too (its lowest pixel within the reach of the stretch's). A
        # line that runs off into the sweep at one end is not this (a strap's foot, kept
        # alone, is cut from the rest of the strap).
        lo, hi = a, b
        while lo > 0 and not tall[lo - 1] and cols[lo - 1] == cols[lo] - 1:
            lo -= 1
        while hi < len(cols) and not tall[hi] and cols[hi] == cols[hi - 1] + 1:
            hi += 1
        if not (lo > 0 and tall[lo - 1] and cols[lo - 1] == cols[lo] - 1
                and abs(int(low[lo - 1]) - int(low[lo])) <= reach
                and hi < len(cols) and tall[hi] and cols[hi] == cols[hi - 1] + 1
                and abs(int(low[hi]) - int(low[hi - 1])) <= reach):
            continue
        if out is None:
            out = m.copy()
        for j in range(a, b):
            out[low[j] - run[j] + 1:low[j] + 1, cols[j]] = 0
    if out is None:
        return m
    return cv2.morphologyEx(out, cv2.MORPH_OPEN, _CROSS)


_FLOOR_LINE_REACH = 0.035
"""The tallest run (of the work copy's side) taken for a shadow line on the floor: 5-11 work
px under novel white headphones at 640² (320 px); a lamp's base is ~19."""
_FLOOR_LINE_RISE = 2.0
"""Brighter at the run's top than at its bottom by this many ratio noise units (the line's
core at the bottom: 0.74-0.80 of the sweep, 0.97 at its top)."""
_FLOOR_LINE_SPAN = 0.1
"""A stretch of such columns at least this share of the mask's width."""


def _high_parts(shadowy: np.ndarray, floor: float, min_area: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``shadowy``'s parts (4-connected) of ``min_area`` or more that start above the row
    ``floor``: (labels, stats, their labels), the candidates ``_split_dark_faces`` and
    ``_split_thin_legs`` part a lighter shadow from."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(shadowy, connectivity=4)
    big = np.nonzero((stats[:, cv2.CC_STAT_AREA] >= min_area)
                     & (stats[:, cv2.CC_STAT_TOP] < floor))[0]
    return labels, stats, big[big > 0]


def _split_dark_faces(shadowy: np.ndarray, ev: Evidence, floor: float, min_area: float
                      ) -> np.ndarray:
    """``shadowy`` (0/1) with each large part that starts above ``floor`` (a row) cut at
    the sharp steps inside it, where that frees a part on the floor that is clearly lighter
    than the rest: a dark box on a mid-dark sweep is "shadow-coloured" itself (0.24-0.3 of
    the sweep: "black" is 0.25), and its hard cast shadow beside it (0.39) was one part with
    it, starting high on the box, so ``_drop_cast_shadow`` never took the shadow as a
    candidate (cast shadows 12027 at 640²: IoU 0.914, said high). A shadow lighter than the
    dark product it touches meets it at the product's outline, a step; a grey product's
    faces over a darker shadow of theirs are left whole (the shadow is not lighter), and so
    is any part whose rest is not dark (``_DARK_FACE``)."""
    labels, stats, big = _high_parts(shadowy, floor, min_area)
    if not len(big):
        return shadowy
    r = cv2.blur(ev.ratio, (3, 3))
    k = np.ones((5, 5), np.uint8)
    step = (cv2.dilate(r, k) - cv2.erode(r, k)) > np.maximum(_DARK_STEP, 3.0 * ev.tol)
    out = shadowy
    for i in big:
        x, y, w, h, _ = stats[i]
        comp = labels[y:y + h, x:x + w] == i
        inner = comp & ~step[y:y + h, x:x + w]
        sn, sl, ss, _ = cv2.connectedComponentsWithStats(inner.astype(np.uint8), connectivity=4)
        rb = ev.ratio[y:y + h, x:x + w]
        tol = float(np.median(ev.tol[y:y + h, x:x + w][comp]))
        for j in range(1, sn):
            if ss[j, cv2.CC_STAT_AREA] < min_area or y + ss[j, cv2.CC_STAT_TOP] < floor:
                continue
            part = sl == j
            rest = inner & ~part
            if not rest.any():
                continue
            dark = float(np.median(rb[rest]))
            if dark > _DARK_FACE or float(np.median(rb[part])) - dark < 2.0 * tol:
                continue
            if out is shadowy:
                out = shadowy.copy()
            # The step between the part and the rest of it no longer joins them.
            out[y:y + h, x:x + w][comp & step[y:y + h, x:x + w]] = 0
    return out


def _split_thin_legs(shadowy: np.ndarray, ev: Evidence, floor: float, min_area: float
                     ) -> np.ndarray:
    """``shadowy`` (0/1) with each large part that starts above ``floor`` (a row) on thin
    grey legs parted from the lighter shadow it reaches on the floor: a stool's grey metal
    legs on a grey sweep are "shadow-coloured" themselves (0.43-0.48 of the sweep), and the
    hard shadow of its seat and legs thrown beside it on the floor (0.51-0.94) was one part
    with them, starting high, so ``_drop_cast_shadow`` never took the shadow as a candidate
    (novel cast shadows 400-899 at 640²: 81 of 500 stools missed, most with their shadow
    kept). The part above ``floor`` is the legs alone (their level: its median ratio);
    below it, what is clearly lighter than that level (by ``_LEG_STEP`` or 2.5× the noise)
    and more than a pixel away from the legs' core is parted off (the pixels between it and
    the legs leave ``shadowy``). Only where the part above the floor is thin (no pixel over
    ``_LEG_HALF`` px inside it: legs, not a grey product's face) and dark (level at most
    ``_LEG_LEVEL``: not a white product's faces, 0.8 of a white sweep)."""
    labels, stats, big = _high_parts(shadowy, floor, min_area)
    if not len(big):
        return shadowy
    out = shadowy
    for i in big:
        x, y, w, h, _ = stats[i]
        f = int(np.ceil(floor)) - y
        if f <= 0 or f >= h:
            continue
        comp = labels[y:y + h, x:x + w] == i
        upper = comp[:f]
        if not upper.any():
            continue
        half = cv2.distanceTransform(np.pad(upper.astype(np.uint8), 1), cv2.DIST_L2, 3)
        if float(half.max()) > _LEG_HALF:
            continue
        # The ratio itself, not a 3×3 mean: a thin ring's mean takes in the lighter floor
        # either side of it.
        rb = ev.ratio[y:y + h, x:x + w]
        level = float(np.median(rb[:f][upper]))
        if level > _LEG_LEVEL:
            continue
        step = max(_LEG_STEP, 2.5 * float(np.median(ev.tol[y:y + h, x:x + w][comp])))
        # The legs' core: dark and thin. A thick part is not (the seat's shadow at its
        # darkest, 0.48, and the legs and ring crossing it): its lighter pixels are parted
        # off right up to the dark ones, which stay (the legs crossing it among them).
        thick = cv2.morphologyEx(comp.astype(np.uint8), cv2.MORPH_OPEN, _DISC7) > 0
        core = comp & (rb <= level + step) & ~thick
        light = comp & (rb > level + step)
        feet = core.copy()
        feet[:f] = False
        if feet.any():
            # In a thick part, a pixel over the legs' own level under the floor line (and
            # its noise) is the shadow: the darkest of a seat's shadow (0.48-0.52) is just
            # lighter than the legs' feet (0.44-0.46), which cross it at their level.
            low = float(np.median(rb[feet]))
            light |= thick & (rb > low + max(_LEG_NOISE, float(np.median(
                ev.tol[y:y + h, x:x + w][comp]))))
        light[:f] = False
        # A pixel next to one that is not light (the legs, the ring, a rim) stays: the
        # part parted off keeps a pixel's distance from them.
        light &= ~(cv2.dilate((comp & ~light).astype(np.uint8), _SQ3) > 0)
        if int(light.sum()) < min_area:
            continue
        # Only a hard shadow's dark parts (median ratio at most ``_LEG_SHADOW``): the floor
        # framed by the legs in the soft light under the seat (0.83-0.94) is
        # ``_drop_enclosed_shadow``'s and ``_drop_framed_backdrop``'s to judge, as a whole
        # (a part of it given back here left the rest unframed and kept: novel cast shadows
        # 529 at 640², 0.946 -> 0.860).
        ln, ll, ls, _ = cv2.connectedComponentsWithStats(light.astype(np.uint8), connectivity=4)
        keep = np.zeros(ln, bool)
        for j in range(1, ln):
            if ls[j, cv2.CC_STAT_AREA] >= min_area:
                jx, jy, jw, jh = ls[j, :4]
                part = ll[jy:jy + jh, jx:jx + jw] == j
                keep[j] = float(np.median(rb[jy:jy + jh, jx:jx + jw][part])) <= _LEG_SHADOW
        light = keep[ll]
        if not light.any():
            continue
        if out is shadowy:
            out = shadowy.copy()
        between = comp & ~light & (cv2.dilate(light.astype(np.uint8), _SQ3) > 0)
        between[:f] = False
        # What is left of the legs under a thick part parted off (a leg's foot past the
        # seat's shadow) is no candidate either: a thin dark piece, the legs' own.
        rest = (comp & ~light & ~between).astype(np.uint8)
        rn, rl, rs, _ = cv2.connectedComponentsWithStats(rest, connectivity=4)
        cut_off = np.nonzero(rs[:, cv2.CC_STAT_TOP] >= f)[0]
        sub = out[y:y + h, x:x + w]
        sub[between] = 0
        if len(cut_off[cut_off > 0]):
            sub[np.isin(rl, cut_off[cut_off > 0])] = 0
    return out


_LEG_HALF = 3.5
"""``_split_thin_legs``: the legs above the floor line are thin: no pixel of them deeper
than this inside (a stool's leg: 4-5 work px across, 2-2.5 deep)."""
_LEG_LEVEL = 0.6
"""...and dark: their median brightness ratio at most this (grey metal on a grey sweep:
0.43-0.44; a white product's faces on a white sweep, 0.8, are left whole)."""
_LEG_SHADOW = 0.8
"""...and is a hard shadow's dark part: its median ratio at most this (a seat's shadow
0.60-0.75; the floor between the legs in the soft light under the seat 0.83-0.94)."""
_LEG_NOISE = 0.025
"""...and in a thick part (the seat's shadow), lighter than the legs' feet by this (or the
noise) is enough."""
_LEG_STEP = 0.07
"""...and the shadow parted off is lighter than the legs by this (or 2.5× the noise):
legs 0.43-0.48, their hard shadow's 10th percentile 0.51-0.65 (novel cast shadows 400-899
at 640², the ten worst stools)."""


def _drop_step_shell(out: np.ndarray, comp: np.ndarray, cut: np.ndarray, ev: Evidence,
                     at: tuple[int, int]) -> None:
    """Give back (in ``out``, in place) the step pixels ``_split_dark_faces`` cut around a
    shadow part just given back (``comp``, its box at ``at``), within 4 px of it and as light
    as it (its 10th percentile ratio, less the noise): its outline against the backdrop and
    the lighter side of the step to the dark product; else a 2-3 px line of them was kept
    along the shadow's top."""
    y, x = at
    hh, ww = comp.shape
    y0, x0 = max(y - 4, 0), max(x - 4, 0)
    y1, x1 = min(y + hh + 4, out.shape[0]), min(x + ww + 4, out.shape[1])
    grown = np.zeros((y1 - y0, x1 - x0), np.uint8)
    grown[y - y0:y - y0 + hh, x - x0:x - x0 + ww] = comp
    grown = cv2.dilate(grown, np.ones((9, 9), np.uint8)) > 0
    box = (slice(y, y + hh), slice(x, x + ww))
    level = float(np.percentile(ev.ratio[box][comp], 10)) - float(np.median(ev.tol[box][comp]))
    shell = grown & cut[y0:y1, x0:x1] & (ev.ratio[y0:y1, x0:x1] >= level)
    out[y0:y1, x0:x1][shell] = 0


_DARK_STEP = 0.08
"""``_split_dark_faces``: a step of the (3×3 mean) brightness ratio over 5×5 pixels this
large (or 3× its noise) parts a dark product from the lighter shadow joined to it (12027:
0.25 against 0.39)."""
_DARK_FACE = 0.35
"""...and the rest of the part (the product) is dark: its median ratio at most this, near
the 0.25 "black" line it only just missed (12027: 0.27). Without it the cut split white
headphones' faces and stools' legs from their own lit parts (novel 0-39 at 640²: four
cases down by 0.06-0.12)."""


def _face_goes_on(comp: np.ndarray, mb: np.ndarray, solid: np.ndarray, ev: Evidence,
                  at: tuple[int, int]) -> bool:
    """Whether ``comp`` (a shadow-coloured part of the mask whose box starts at ``at``;
    ``mb`` and ``solid``, the mask and its clearly-product pixels, from the frame's top down
    to the part's last row over its columns) is a face of the black product above it going
    on: the mask over its top (2-6 rows up) is a quarter or more black (not merely
    coloured: a coloured product as bright as its own shadow is a coincidence this must not
    keep) and as bright as the part's top rows (medians within ``_FACE_STEP`` of the sensor
    noise), and the part is one flat face. "Black" is a ratio to the backdrop (0.25): a dark
    box on a sweep whose floor darkens under it crosses that line part-way down its front
    face, and the lower strip, grey-coloured, 0.25-0.27 of the sweep and touching the floor,
    was cut as its cast shadow (cast shadows 5196 at 1500²: the box's lowest 10 %, IoU 0.909). A
    shadow under a black product is lighter than it by a step at the product's outline (its
    darkest, the contact shadow, is 0.3 of the backdrop or more)."""
    y0, x0 = at
    hh, ww = comp.shape
    cols = np.nonzero(comp.any(0))[0]
    ys = y0 + np.argmax(comp[:, cols], axis=0)

    def lum(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return ev.ratio[yy, xx] * ev.lum_bg[yy, xx]

    above, n_solid, inside = [], 0, []
    for d in range(2, 7):
        ya = ys - d
        ok = ya >= 0
        ok[ok] &= mb[ya[ok], cols[ok]]
        ok[ok] &= ~((ya[ok] >= y0) & comp[np.maximum(ya[ok] - y0, 0), cols[ok]])
        above.append(lum(ya[ok], x0 + cols[ok]))
        n_solid += int((solid[ya[ok], cols[ok]] & (ev.ratio[ya[ok], x0 + cols[ok]] <= 0.25)).sum())
    for d in (0, 1, 2):
        yi = np.minimum(ys + d, y0 + hh - 1)
        ok = comp[yi - y0, cols]
        inside.append(lum(yi[ok], x0 + cols[ok]))
    above_v, inside_v = np.concatenate(above), np.concatenate(inside)
    if len(above_v) < 2.5 * len(cols) or n_solid < 0.25 * len(above_v) or not len(inside_v):
        return False  # no product over most of its columns, or no black one
    box = (slice(y0, y0 + hh), slice(x0, x0 + ww))
    tol = ev.tol[box][comp]
    noise = float(np.median(tol * ev.lum_bg[box][comp])) / 2.5
    if abs(float(np.median(inside_v)) - float(np.median(above_v))) > _FACE_STEP * noise:
        return False
    return _flat_face(ev.ratio[box][comp], float(np.median(tol)))


_FACE_STEP = 0.5
"""``_face_goes_on``: a black face's part over the line and the part under it differ by
0-0.1 of the noise (medians over hundreds of pixels); a shadow's top under a black product
by a step of several noise units."""


def _flank_goes_on(comp: np.ndarray, mb: np.ndarray, solid: np.ndarray, ev: Evidence,
                   at: tuple[int, int]) -> bool:
    """Whether ``comp`` (boxes as in ``_face_goes_on``) is the lower part of a dark
    cylinder's flank going on up the product: a chrome or dark glass bottle's side is shaded
    across its width (darker towards the rim) but evenly down it, and where its brightness
    hovers at the "black" line (0.25 of the backdrop) its lower stretch comes apart from the
    rest of the flank as a shadow-coloured strip touching the backdrop along the outline and
    was cut as a cast shadow (glossy 5508, a chrome bottle on grey, at 640²: 0.976 -> 0.903).
    ``_face_goes_on`` compares medians over the part's whole width and wants it flat, which a
    flank is not. Here each column is read on its own: the mask over the part's top in that
    column (2-6 rows up) is product, a quarter of it black, and as bright as the part's top
    rows in the same column (the median step over the columns within ``_FACE_STEP`` of the
    noise); and the part is flat down its columns (its ratios less each column's median,
    10th to 90th percentile, within the noise). A shadow under a black product is lighter
    than it by a step; a shadow on the floor fades down its columns."""
    y0, x0 = at
    hh, ww = comp.shape
    cols = np.nonzero(comp.any(0))[0]
    if len(cols) < 3:
        return False
    ys = y0 + np.argmax(comp[:, cols], axis=0)

    def lum(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return ev.ratio[yy, xx] * ev.lum_bg[yy, xx]

    above = np.full((5, len(cols)), np.nan, np.float32)
    n_ok = n_solid = 0
    for j, d in enumerate(range(2, 7)):
        ya = ys - d
        ok = ya >= 0
        ok[ok] &= mb[ya[ok], cols[ok]]
        ok[ok] &= ~((ya[ok] >= y0) & comp[np.maximum(ya[ok] - y0, 0), cols[ok]])
        above[j, ok] = lum(ya[ok], x0 + cols[ok])
        n_ok += int(ok.sum())
        n_solid += int((solid[ya[ok], cols[ok]] & (ev.ratio[ya[ok], x0 + cols[ok]] <= 0.25)).sum())
    # Black over it, or a strip standing at least ``_FLANK_TALL`` times as tall as it is
    # wide (a floor shadow beside a grey product's face of its colour lies flat).
    if n_ok < 2.5 * len(cols) or (n_solid < 0.25 * n_ok and hh < _FLANK_TALL * ww):
        return False
    inside = np.full((3, len(cols)), np.nan, np.float32)
    for j, d in enumerate((0, 1, 2)):
        yi = np.minimum(ys + d, y0 + hh - 1)
        ok = comp[yi - y0, cols]
        inside[j, ok] = lum(yi[ok], x0 + cols[ok])
    both = (np.isfinite(above).sum(0) >= 3) & np.isfinite(inside).any(0)
    if both.sum() < 0.5 * len(cols):
        return False
    step = np.nanmedian(inside[:, both], 0) - np.nanmedian(above[:, both], 0)
    box = (slice(y0, y0 + hh), slice(x0, x0 + ww))
    tol = ev.tol[box][comp]
    noise = float(np.median(tol * ev.lum_bg[box][comp])) / 2.5
    if abs(float(np.median(step))) > _FLANK_STEP * noise:
        return False
    r = np.where(comp, ev.ratio[box], np.nan)
    colmed = np.full(ww, np.nan, np.float32)
    colmed[cols] = np.nanmedian(r[:, cols], 0)
    core = cv2.erode(comp.astype(np.uint8), _CROSS) > 0
    res = (r - colmed[None, :])[core if core.sum() >= 0.3 * comp.sum() else comp]
    return _flat_face(res, _FLANK_FLAT * float(np.median(tol)))


_FLANK_STEP = 1.0
"""``_flank_goes_on``: the median over the columns of the step from the flank above the part
to its top rows, in noise units (chrome flanks 0.2-0.6; a shadow under a black product is
lighter by tens of levels)."""
_FLANK_TALL = 3.0
_FLANK_FLAT = 1.5
"""``_flank_goes_on``: a flank's ratios less each column's median spread over 1.1-1.2 of
the noise floor (chrome bottles 5508, 10324 at 640²: the edge blur and the JPEG's blocks);
a shadow's penumbra fading down its columns, some 6."""


def _drop_enclosed_shadow(m: np.ndarray, ev: Evidence) -> np.ndarray:
    """Cut the backdrop enclosed by thin parts of the product and darkened by its shadow.

    Between a stool's legs and its foot ring the floor lies in the stool's own shadow: the
    backdrop's chroma, darker. It touches no clear backdrop (``_drop_cast_shadow`` does not
    see it) and is not plain backdrop (``_fill_holes`` filled it), so it was kept as the
    stool (IoU 0.5-0.6, novel shapes). A part of the region that is no product evidence,
    has the backdrop's chroma, is no brighter than it and not black (the floor in shadow, or
    lit a few per cent under the backdrop model between faint edges of the shadow), lies on
    the floor (its top in the lower 45 % of the region, no product body right under most of
    its columns), is walled in mostly by *thin* parts (legs, a ring: gone in an opening by
    a 9×9 disc) or more of the shadow, and is closed from above by a thin part, is cut. A
    grey or white product's lower face is closed from above by its own body: it is kept;
    white on white (closed from its outline) is not looked at. The other guards (width,
    enclosed, not under 0.6 of the backdrop, walls not lighter, no sheen darkening into the
    body) each stopped a wrong cut seen on the way (docs/OPS.md, "Novel shapes, first
    pass")."""
    box = _around(m, 5)
    if box is None:
        return m
    full, m = m, m[box]
    rows = np.nonzero(m.any(1))[0]
    top, bottom = rows[0], rows[-1]
    height = bottom - top + 1
    low = top + int(0.55 * height)
    total = int(cv2.countNonZero(m))
    ratio, chroma, tol = ev.ratio[box], ev.chroma[box], ev.tol[box]

    def shadowish(sl):
        return ((chroma[sl] < 0.5) & (ratio[sl] > 0.25) & (ratio[sl] < 1 + tol[sl])
                & (m[sl] > 0) & ~ev.product[box][sl])

    # Cheap way out: few such pixels in the lower part of the region (most products).
    if int(np.count_nonzero(shadowish(slice(low, None)))) < 0.01 * total:
        return full
    cand = cv2.morphologyEx(shadowish(slice(None)).astype(np.uint8), cv2.MORPH_OPEN, _CROSS)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=4)
    cands = np.nonzero((stats[:, cv2.CC_STAT_AREA] >= 0.01 * total)
                       & (stats[:, cv2.CC_STAT_TOP] >= low))[0]
    cands = cands[cands > 0]
    if not len(cands):
        return full
    # Thin on what is left of the region without those pixels (filled, the shadow between
    # the legs made them part of one solid blob).
    rest = ((m > 0) & (cand == 0)).astype(np.uint8)
    thin = (rest > 0) & (cv2.morphologyEx(rest, cv2.MORPH_OPEN, _DISC9) == 0)
    solid = (m > 0) & _clearly_product(chroma, ratio)
    # A wall may also be more of the shadow, dark enough to be product evidence (its core
    # under the ring and the feet, under the shadow floor) or edged (the legs' own shadows).
    wall_ok = thin | ((chroma < 0.5) & (ratio > 0.25))
    ok = []
    for i in cands:
        x, y, w, h, area = stats[i]
        y0, x0 = max(y - 1, 0), max(x - 1, 0)
        y1, x1 = min(y + h + 1, m.shape[0]), min(x + w + 1, m.shape[1])
        comp = labels[y0:y1, x0:x1] == i
        c8 = comp.astype(np.uint8)
        ring = cv2.dilate(c8, np.ones((3, 3), np.uint8)).astype(bool) & ~comp
        # Under 0.6 of the backdrop is more likely a grey part of the product, flat and
        # edged all round, than the floor in its shadow (novel seeds 10-39 at 640²/800²: a
        # lamp's grey base on a beige sweep 0.47, a stool's legs on a grey table 0.52, a
        # watch's bezel in low light 0.53; the gaps cut rightly 0.65-1.0, one hard shadow
        # 0.56, left).
        if float(np.median(ratio[y0:y1, x0:x1][comp])) < _GAP_DARKEST:
            continue
        # Enclosed: a part open to the outside along much of its rim is the end of a light
        # sole, or a shadow that ``_drop_cast_shadow`` judges (textured 3024 at 640²).
        if (ring & (m[y0:y1, x0:x1] == 0)).sum() >= _OPEN_RIM * ring.sum():
            continue
        walls = ring & (m[y0:y1, x0:x1] > 0) & ~(cand[y0:y1, x0:x1] > 0)
        # Its walls: the product pixels around it that are not more of the same shadow.
        n_w = int(walls.sum())
        if not n_w or (walls & wall_ok[y0:y1, x0:x1]).sum() < _THIN_WALLS * n_w:
            continue
        # Seen between dark legs, a gap is no darker than its walls; a grey part of the
        # product (a stool's leg on a grey table, a watch's bezel) is darker than the edges
        # around it, which blend it with the lighter backdrop (0.52 inside, ~0.75 around).
        r_box = ratio[y0:y1, x0:x1]
        if float(np.median(r_box[walls])) > float(np.median(r_box[comp])) + _WALLS_LIGHTER:
            continue
        # ...and what closes it from above is a thin part itself (a foot ring), not the
        # product's body (a grey lower face of a two-tone product, edged at its sides).
        cap = np.zeros_like(comp)
        cap[:-2] = comp[1:-1] | comp[2:]
        cap &= walls
        if cap.any() and (cap & thin[y0:y1, x0:x1]).sum() < _THIN_WALLS * cap.sum():
            continue
        # A face of the product has its body under it; a gap between the legs has the
        # floor, or a thin part across it (the near side of the foot ring).
        if _product_under(comp, (solid & ~thin)[y0:, x0:x1], y1 - y0) >= 0.5:
            continue
        # ...or under a ramp that only darkens into it: a black case's grey sheen (thin
        # parts 9113 at 800², as in ``_drop_cast_shadow``).
        if _darkens_into(comp, m[y0:, x0:x1] > 0, solid[y0:, x0:x1], ratio[y0:, x0:x1],
                         tol[y0:, x0:x1], y1 - y0) >= 0.5:
            continue
        # A gap between legs is some pixels across somewhere; a strip along a product's side
        # is a face seen edge-on (a chrome bottle's mid-grey rim on a grey sweep, 3 px wide:
        # IoU 0.976 -> 0.956).
        c8 = np.pad(comp.astype(np.uint8), 1)
        if float(cv2.distanceTransform(c8, cv2.DIST_L2, 3).max()) < _GAP_HALF_WIDTH:
            continue
        ok.append(i)
    out = m.copy()
    removed = 0
    for i in ok:
        area = int(stats[i, cv2.CC_STAT_AREA])
        if removed + area > 0.4 * total:
            continue
        x, y, w, h = stats[i, :4]
        out[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i] = 0
        removed += area
    if not removed:
        return full
    res = full.copy()
    res[box] = cv2.morphologyEx(out, cv2.MORPH_OPEN, _CROSS)
    return res


def _trim_gap_rims(m: np.ndarray, cut: np.ndarray, ev: Evidence) -> np.ndarray:
    """Cut the band of floor left round the gaps ``_drop_enclosed_shadow`` cut (``cut``).

    The gaps between a stool's legs and under its foot ring are cut, but a band 1-3 work px
    wide round each was left as product: along the legs, under the ring, and the contact
    shadow between the feet (the candidates are opened by a cross; the band is mixed with the
    legs and JPEG smears it). On a stool a 2 px band costs 0.03-0.07 of IoU (novel stools
    400-699 at 640², 195 of 509 under 0.93). The cut grows over it, ``_GROW_STEPS`` 3×3
    steps at most, into mask pixels that are not coloured, not dark and not next to a pixel
    that is (a leg keeps a 1 px rim: the edge matte's to decide), no brighter than the
    backdrop; then a cross's opening near what it took. Grown from ``_drop_framed_backdrop``'s
    cut too, it ate a lamp's pole on a dark wood table (0.8 of the table, neutral: novel
    two-plane lamps 426, 435, 453 fell 0.01-0.02); that cut is not grown."""
    box = _around(m, 5)
    if box is None or not cut[box].any():
        return m
    mb, cb = m[box] > 0, cut[box]
    ratio, chroma, tol = ev.ratio[box], ev.chroma[box], ev.tol[box]
    clear = cv2.dilate(((chroma >= 1.0) | (ratio <= _GROW_DARK)).view(np.uint8), _SQ3)
    growable = mb & (chroma < _GROW_CHROMA) & (clear == 0) & (ratio < 1 + tol)
    grown = cb & ~mb
    for _ in range(_GROW_STEPS):
        add = (cv2.dilate(grown.view(np.uint8), _SQ3) > 0) & growable & ~grown
        if not add.any():
            break
        grown |= add
    if not (grown & mb).any():
        return m
    kept = (mb & ~grown).view(np.uint8)
    # The 1 px slivers the growth leaves between it and the outline go too (a cross's
    # opening, near what it took only).
    near = cv2.dilate((grown & mb).view(np.uint8), _SQ3, iterations=2) > 0
    kept[near] = cv2.morphologyEx(kept, cv2.MORPH_OPEN, _CROSS)[near]
    out = m.copy()
    out[box] = kept
    return out


_GROW_STEPS = 3
_GROW_CHROMA = 0.8
_GROW_DARK = 0.65
"""``_trim_gap_rims``: at most ``_GROW_STEPS`` 3×3 steps from the cut, into pixels under
``_GROW_CHROMA`` of the chroma threshold and over ``_GROW_DARK`` of the backdrop (a stool's
grey legs 0.3-0.5, on a dark wood table 0.75 but coloured: chroma 1.2-2; the floor band
0.7-0.95, chroma under 0.75), none next to a pixel that is not."""


_DISC9 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
_WALLS_LIGHTER = 0.05
_GAP_DARKEST = 0.6
_OPEN_RIM = 0.5
"""An enclosed shadow's rim is under this share outside the region (the stools' gaps 0-0.05;
a sole's end cut by mistake, 0.66)."""
_GAP_HALF_WIDTH = 2.5
"""An enclosed shadow is cut only where it is over ~5 px across somewhere (its largest
distance to its own edge, work pixels): the stools' gaps 3-20, a chrome rim's strip 2."""
_THIN_WALLS = 0.6
"""Share of an enclosed shadow's walls that must be thin parts of the product."""


def _body(m: np.ndarray) -> np.ndarray:
    """bool: the product's body, what of the mask ``m`` survives an opening by a 9×9 disc:
    not its thin parts (a stool's legs and foot ring, 2-5 work px across, a strap, a
    cable). A sole hangs under a body; the floor between a stool's legs and under its foot
    ring hangs under thin parts only."""
    return cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, _DISC9) > 0


def _restore_lit_parts(m: np.ndarray, ev: Evidence) -> np.ndarray:
    """Give back to the product a light part under it that was read as its shadow: a sole.

    A sneaker's white sole on a white or light table (228 levels on 246), or a warm-grey one
    on a dim sweep, has the backdrop's chroma and is 4-11 % darker: what a shadow looks like
    (``shadow_like``). At 640² its outline closes, the regions keep it and
    ``_drop_cast_shadow`` gives it back (a shadow-coloured part low in the region, open to
    the outside); at 800² and 1500² its ends meet the table or the sneaker's own shadow at
    nearly the same grey, the outline stays open and it is never filled (textured 3024,
    3025, 9422, low light 4008: IoU 0.69-0.76). What tells it from a shadow is what lies
    past it: a shadow is darkest next to the product and lightens away from it (a contact
    shadow, a cast one), while past a sole's lower edge the table steps *down*, into the
    product's own shadow. So a part beyond the mask's bottom is product when

    * it is closed off: a hole of the mask and the product evidence near it closed with an
      11 px disc (the sole's corners may have gaps of several px), or the band between the
      outline and the lit steps beyond it (``_lit_steps``: a lighter band ending in a sharp
      step down, which finds the sole's lower edge where its ends stay open), 2 px short of
      the step;
    * it hangs under the product: in the lower 45 % of the mask (on the floor, where
      ``_drop_cast_shadow`` looks), with the mask within 3 px above half its columns or
      more, 1-50 % of the mask's area, of the backdrop's chroma (median under 1) and darker
      than it (median ratio under 1 − half its noise: a lit gap of table between a product
      and its shadow is not), and flat (its 10th to 90th percentile of brightness within the
      ratio's noise: the soles 0.3-0.5 of it, the penumbra of a mug handle's shadow in the
      hollow under the handle, closed off by the shadow's edge, 6);
    * and the table is darker right under it: within 2-6 px under its lowest pixel, in half
      its columns or more, darker than its own median by the ratio's noise. A cast shadow,
      a contact shadow and a lit gap between a product and its shadow all have lighter table
      (or the shadow's lighter end) under them.

    The parts given back are joined (their convex hull, less what is darker than them: the
    shadow past the sole's edge) and closed with the evidence around them (a sole found in
    pieces along an edge seen in pieces)."""
    rows = np.nonzero(m.any(1))[0]
    if not len(rows):
        return m
    top, bottom = rows[0], rows[-1]
    height = bottom - top + 1
    total = int(cv2.countNonZero(m))
    reach = max(12, int(_LIT_REACH * total ** 0.5))
    box = _around(m, reach + _SOLE_CLOSE)
    if box is None:
        return m
    # Only the floor matters: the lower part of the mask and what lies under it (the box's
    # top edge is continued by the closing, so the mask's body closes it off).
    y_top = top + (1.0 - _SHADOW_LOW) * height
    box = (slice(max(box[0].start, int(y_top) - _SOLE_CLOSE), box[0].stop), box[1])
    y_top -= box[0].start
    mb = m[box]
    hb, wb = mb.shape
    r3 = cv2.blur(ev.ratio[box], (3, 3))
    if not _steps_down_under(mb, r3, ev.tol[box], reach):
        return m  # (most photos: the table under the product only lightens away from it)
    sub = replace(ev, product=ev.product[box], ratio=ev.ratio[box], chroma=ev.chroma[box],
                  tol=ev.tol[box], bg_like=ev.bg_like[box], shadow_like=ev.shadow_like[box],
                  lum_bg=None, tint=None)
    # The band between the outline and each lit step beyond it, stopped short of the step.
    band = np.zeros_like(mb)
    steps = _lit_steps(mb, sub)
    if steps is not None and len(steps.ys):
        t = np.arange(_SOLE_SHORT, float(steps.dist.max()) + 1.0, 0.5, dtype=np.float32)
        ok = t[None, :] <= steps.dist[:, None]
        iy = np.rint(steps.ys[:, None] - t[None, :] * steps.ny[:, None])[ok].astype(np.intp)
        ix = np.rint(steps.xs[:, None] - t[None, :] * steps.nx[:, None])[ok].astype(np.intp)
        iy += steps.box[0].start
        ix += steps.box[1].start
        ok = (iy >= 0) & (iy < hb) & (ix >= 0) & (ix < wb)
        band[iy[ok], ix[ok]] = 1
        band[mb > 0] = 0
    closed = _close_in_frame(mb | sub.product.astype(np.uint8) | band,
                             cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_SOLE_CLOSE,) * 2))
    n, lab = cv2.connectedComponents((1 - closed).astype(np.uint8), connectivity=4)
    is_hole = np.ones(n, bool)
    is_hole[0] = False  # (the closed mask itself)
    is_hole[np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])] = False
    hole = is_hole[lab]
    cand = ((hole | (band > 0)) & (mb == 0)).astype(np.uint8)
    if cv2.countNonZero(cand) < 0.01 * total:
        return m  # (most photos: nothing closed off under the product, no lit step)
    rim = (closed > 0) & (mb == 0)  # the evidence around the candidates
    cand = cv2.morphologyEx(cand, cv2.MORPH_OPEN, _CROSS)
    cand = _close_in_frame(cand, _DISC7) & (mb == 0)
    nc, cl, st, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=8)
    if nc <= 1:
        return m
    tol, chroma = sub.tol, sub.chroma
    grow = np.ones((2 * _SOLE_GROW + 1,) * 2, np.uint8)
    acc = np.zeros((hb, wb), bool)
    body = None
    for i in range(1, nc):
        x, y, w, h, area = st[i]
        if area < 0.01 * total or area > 0.5 * total or y < y_top:
            continue
        core = cl[y:y + h, x:x + w] == i
        sl = (slice(y, y + h), slice(x, x + w))
        if np.median(chroma[sl][core]) >= 1.0:
            continue
        r_in = float(np.median(r3[sl][core]))
        t_in = float(np.median(tol[sl][core]))
        if r_in > 1.0 - 0.5 * t_in:
            continue  # the table's own brightness: a lit gap between a product and its shadow
        if not _flat_face(r3[sl][core], t_in):
            continue  # a shadow's penumbra (a ramp)
        comp = (cl == i) | ((cv2.dilate((cl == i).astype(np.uint8), grow) > 0) & rim)
        cols = np.nonzero(comp.any(0))[0]
        hi = np.argmax(comp[:, cols], axis=0)
        if body is None:
            body = _body(mb)
        above = np.zeros(len(cols), bool)
        for d in range(1, 4):
            yy = hi - d
            ok = yy >= 0
            above[ok] |= body[yy[ok], cols[ok]]
        if above.mean() < 0.5 or _darker_under(comp, mb == 0, r3, r_in - t_in) < 0.5:
            continue
        acc |= comp
    if not acc.any():
        return m
    # Join the parts: their hull, less what is darker than them (the shadow past the edge).
    cnts, _ = cv2.findContours(acc.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = np.zeros((hb, wb), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.concatenate(cnts)), 1)
    acc |= ((hull > 0) & (r3 >= np.median(r3[acc]) - np.median(tol[acc])) & (chroma < 1.0)
            & (mb == 0))
    ob = (mb | acc).astype(np.uint8)
    ob = cv2.morphologyEx(ob, cv2.MORPH_OPEN, _CROSS) | mb
    # ...and closed with the evidence around them, near them only (a handle's hole elsewhere
    # stays open).
    joined = _fill_holes(_close_in_frame(ob, _DISC7) & (ob | rim | cand).astype(np.uint8),
                         np.zeros((hb, wb), bool))
    near_acc = cv2.dilate(acc.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
    ob[(joined > 0) & near_acc] = 1
    out = m.copy()
    out[box] = ob
    return out


def _fill_sandwiched(m: np.ndarray, ev: Evidence, img: np.ndarray | None = None) -> np.ndarray:
    """Fill a part of the product that lies between two parts of it, above and below it in
    each of its columns, but opens to the outside through a gap in its outline.

    A cream label across a green bottle on a light table lights no colour evidence; only its
    outline tells it, and where its shaded side meets the bottle's cast shadow (or its lit
    side the table) at their grey, the outline has a gap. At 640² the regions' closing
    bridges it and the label is a hole, which ``_fill_holes`` fills; at 800² and 1500² the
    gap is wider, the label leaks to the outside through it and is cut away, sideways
    (textured 5392 at 800²: IoU 0.91; held-out 1001 at 1500²: 0.86). So a part that is

    * between *solid* product above and below it in each of its columns (not the backdrop's
      colour, not shadow-coloured: a blob of cast shadow kept under a mug's handle does not
      close off the lit table between them, cast shadows 5334),
    * 1 % of the mask or more, open to the outside (a hole of the mask had its say),

    is judged as the hole it would be were its outline closed: filled unless it looks like
    the backdrop (``_fill_holes``: half of it plain backdrop or more, unless it is off the
    backdrop's colour as a face is). A label that is more than half plain backdrop (a cream
    label on light stone, textured 5399) stays out: filling such parts when the product's
    evidence lined their opening took the gaps between a plant's leaves (the novel shapes,
    83 of 96 cutouts it touched went down)."""
    box = _around(m, 16)
    if box is None:
        return m
    mb = m[box] > 0
    # Product that looks neither like the backdrop nor like a shadow (``_drop_cast_shadow``'s
    # shadowy pixels: the backdrop's chroma, darker), a speck of noise left out.
    r = ev.ratio[box]
    solid = mb & ~ev.bg_like[box] & ~_shadow_coloured(ev.chroma[box], r, ev.tol[box])
    solid = cv2.erode(solid.astype(np.uint8), _CROSS) > 0
    # Under solid product and over solid product in the same column: the span between them.
    hb = solid.shape[0]
    first = np.argmax(solid, axis=0)
    last = hb - 1 - np.argmax(solid[::-1], axis=0)
    ys = np.arange(hb)[:, None]
    cand = (ys > first) & (ys < last) & solid.any(0) & ~mb
    total = int(cv2.countNonZero(mb.view(np.uint8)))
    if cv2.countNonZero(cand.view(np.uint8)) < 0.01 * total:
        return m  # (most photos: nothing between two parts of the product)
    # Open to the outside (the box's edge, padded: a cropped product's mask reaches it): a
    # hole of the mask (a mug's handle) had its say in ``_fill_holes``.
    outside = np.pad((~mb).astype(np.uint8), 1, constant_values=1)
    cv2.floodFill(outside, None, (0, 0), 2, flags=4)
    leaks = cand & (outside[1:-1, 1:-1] == 2)
    if not leaks.any():
        return m
    n, lab, st, _ = cv2.connectedComponentsWithStats(cand.astype(np.uint8), connectivity=4)
    keep = np.zeros(n, bool)
    keep[1:] = st[1:, cv2.CC_STAT_AREA] >= 0.01 * total
    touched = np.zeros(n, bool)
    touched[np.unique(lab[leaks])] = True
    keep &= touched
    if not keep[1:].any():
        return m
    sel = keep[lab]
    # Judge each part as a hole: close it off from the outside and let ``_fill_holes`` decide.
    walled = (mb | (cand & ~sel)).astype(np.uint8)
    ring = cv2.dilate(sel.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    walled[ring & ~sel] = 1
    filled = _fill_holes(walled, ev.bg_like[box], ev.chroma[box]) > 0
    add = filled & sel
    # A part that looks like the backdrop, with the colour of the solid product beside it: a
    # face of it across a change of backdrop (a sole's strip above a table's horizon).
    rest = sel & ~filled
    if img is not None and ev.lum_bg is not None and rest.any():
        n3, l3, s3, _ = cv2.connectedComponentsWithStats(rest.view(np.uint8), connectivity=4)
        if n3 > 1:
            add |= _face_across(img[box], l3, s3, np.ones(n3, bool), solid,
                                ev.lum_bg[box])[l3]
    # A band straight across the product (a cream label on light stone cut the bottle in two).
    at_edge = (box[1].start == 0, box[1].stop >= m.shape[1])  # (_around does not clip stop)
    for i in np.nonzero(keep)[0]:
        comp = lab == i
        if not (add & comp).any() and _band_across(comp, mb, at_edge):
            add |= comp
    if not add.any():
        return m
    # ...and one face, shaded across (a cylinder's label, a sole): in each column it keeps
    # its brightness (10th to 90th percentile within a quarter of the ratio's noise; the
    # labels and soles 0.06-0.2 of it), and it is not all shadow. A pocket of the
    # product's shadow between a stool's seat and rail, or between a plant's leaves, darkens
    # down the column (2-7) or is shadow through and through.
    r3 = cv2.blur(ev.ratio[box], (3, 3))
    tol = ev.tol[box]
    n2, l2, s2, _ = cv2.connectedComponentsWithStats(add.astype(np.uint8), connectivity=4)
    for i in range(1, n2):
        x, y, w, h, _ = s2[i]
        sl = (slice(y, y + h), slice(x, x + w))
        comp = l2[sl] == i
        rc = r3[sl]
        t = float(np.median(tol[sl][comp]))
        shadowy = float(((ev.chroma[box][sl] < 0.5) & (rc < 1 - tol[sl]))[comp].mean())
        cols = comp.sum(0) >= 3
        flat = False
        if cols.any():
            rr = np.where(comp[:, cols], rc[:, cols], np.nan)
            lo, hi = np.nanpercentile(rr, [10, 90], axis=0)
            flat = float(np.median(hi - lo)) <= _SANDWICH_FLAT * t
        if not flat or shadowy >= _SANDWICH_SHADOW:
            add[sl][comp] = False
    return _put(m, box, add)


def _band_across(comp: np.ndarray, mb: np.ndarray, at_edge: tuple[bool, bool]) -> bool:
    """Whether a part between product above and below it is a band straight across the
    product, the product's outline running straight on through it at both sides.

    A cream label across a green bottle on a light stone table looks like the table (78 % of
    it plain backdrop) and was cut away whole, the bottle in two (textured 17213 at 640²:
    IoU 0.697, said high; 13024, 10312, 5399). tex18's first form (the rows just above and
    below span the same columns, the part fills that rectangle) also took a bay between a
    headphone's band and its cup cut by the frame's edge (novel framing 407, 408) and a gap
    between two leaves (novel thin parts 407). Here, besides:

    * the product's left and right ends over ``_BAND_RUN`` rows above and below the part lie
      within ``_BAND_SIDE`` px of one upright line each (a bottle's sides; a leaf's or a
      cup's round edges do not);
    * in 90 % of the part's rows, the product with the part ends at those lines (no arm of
      the product beside the part, as around a bay between two arms);
    * neither the part nor those rows reach the frame's edge (``at_edge``: the box's left /
      right edge is the frame's)."""
    rows = np.nonzero(comp.any(1))[0]
    y0, y1 = int(rows[0]), int(rows[-1])
    hb, wb = comp.shape
    if y0 < _BAND_RUN or y1 + _BAND_RUN >= hb:
        return False
    cols = np.nonzero(comp.any(0))[0]
    x0, x1 = int(cols[0]), int(cols[-1])
    if (at_edge[0] and x0 <= 1) or (at_edge[1] and x1 >= wb - 2):
        return False
    ends = []
    for y in list(range(y0 - _BAND_RUN, y0)) + list(range(y1 + 1, y1 + 1 + _BAND_RUN)):
        # The product's own extent on that row: its runs that meet the part's columns, to
        # their real ends (a lamp's wide shade over its base is no band's edge).
        row = mb[y]
        xs = np.nonzero(row[x0:x1 + 1])[0]
        if not len(xs):
            return False
        a, b = x0 + int(xs[0]), x0 + int(xs[-1])
        while a > 0 and row[a - 1]:
            a -= 1
        while b + 1 < len(row) and row[b + 1]:
            b += 1
        if (at_edge[0] and a == 0) or (at_edge[1] and b == wb - 1):
            return False
        ends.append((y, a, b))
    e = np.array(ends, np.float32)
    # Each side one straight, upright line through the ends above and below.
    if float(np.abs(e[:, 1:] - np.median(e[:, 1:], axis=0)).max()) > _BAND_SIDE:
        return False
    left, right = (int(round(v)) for v in np.median(e[:, 1:], axis=0))
    if right - left < 8 or x0 < left - _BAND_SIDE or x1 > right + _BAND_SIDE:
        return False
    both = comp | mb
    # ...and fills the rectangle between the sides but for 5 % (2 px in from each line: a
    # rim the cutout lost).
    if float(both[y0:y1 + 1, left + 2:right - 1].mean()) < 0.95:
        return False
    # The outline runs straight on through the band: in its rows the product with it ends
    # where the sides above and below do (no arm of the product beside the part, as around
    # a bay between two arms).
    ok = 0
    for y in range(y0, y1 + 1):
        row = both[y]
        a, b = left, right
        while a > 0 and row[a - 1]:
            a -= 1
        while b + 1 < wb and row[b + 1]:
            b += 1
        ok += (left - _BAND_OUT <= a <= left + _BAND_IN
               and right - _BAND_IN <= b <= right + _BAND_OUT)
    return ok >= 0.9 * (y1 - y0 + 1)


_BAND_SIDE = 2.0
_BAND_RUN = 6
_BAND_OUT = 3
_BAND_IN = 6
"""``_band_across``: in the band's rows the product with the part ends at most ``_BAND_OUT``
px past the sides' lines (a rim the matte left) and at most ``_BAND_IN`` px inside them (a
label's rim lost against a light table, textured 13024: 3-4 px)."""

_SANDWICH_FLAT = 0.25
_SANDWICH_SHADOW = 0.9
"""``_fill_sandwiched``: a part is one face when its columns' brightness spread (median over
columns of the 10th-90th percentile) is within this share of the ratio's noise, and less
than this share of it is shadow-coloured."""


def _hung_bodies(m: np.ndarray, ev: Evidence) -> np.ndarray | None:
    """0/1 uint8: the bodies of the mask that hang under its main one by thin parts only
    (``_hanging``: ``_drop_framed_backdrop``'s bodies, before it asks whether they look like
    the backdrop); None where there are none.

    Closed by its legs and foot ring, the floor between a stool's legs is one such body,
    larger than the seat; with the backdrop's chroma and 0.8-1.0 of its brightness it made
    the whole region read as white on white, which is closed from its outline and keeps the
    floor: a stool with a teal or red seat and dark legs on a grey sweep, IoU 0.49-0.50
    said high (novel 44, 49, 430, 411 at 640²)."""
    box = _around(m, 5)
    if box is None:
        return None
    mb = m[box]
    found = _hanging(mb, ev.chroma[box], ev.ratio[box])
    if found is None or not found[2].any():
        return None
    lab, _, hung = found
    out = np.zeros_like(m)
    out[box] = hung[lab].view(np.uint8) & mb
    return out


def _hanging(mb: np.ndarray, chroma: np.ndarray, r: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The bodies of the (boxed) mask ``mb`` and which of them hang under its main one by
    thin parts only: (labels, stats, hung: bool per label), or None where the mask is one
    body. Opened by a 9×9 disc, the mask falls apart into its bodies (``_body``); the main
    one holds the most solid product (``_clearly_product``); a body hangs under it where
    it is 1 % of the mask or more, its top below the main body's bottom and in the lower
    70 % of the mask (``_FRAMED_LOW``: the floor, not a part beside the body)."""
    # Most products are one body. The opening's dilation joins parts, never splits one: an
    # erosion in one piece is one body, and the dilation is not paid for.
    core = cv2.erode(mb, _DISC9)
    if cv2.connectedComponents(core, connectivity=8)[0] <= 2:
        return None
    n, lab, st, _ = cv2.connectedComponentsWithStats(cv2.dilate(core, _DISC9), connectivity=8)
    if n <= 2:
        return None
    solid = (mb > 0) & _clearly_product(chroma, r)
    n_solid = np.bincount(lab.ravel(), weights=solid.ravel(), minlength=n)
    main = 1 + int(np.argmax(n_solid[1:]))
    main_bottom = st[main, cv2.CC_STAT_TOP] + st[main, cv2.CC_STAT_HEIGHT] - 1
    rows = np.nonzero(mb.any(1))[0]
    low = rows[0] + _FRAMED_LOW * (rows[-1] - rows[0] + 1)
    total = int(cv2.countNonZero(mb))
    top = st[:, cv2.CC_STAT_TOP]
    hung = (st[:, cv2.CC_STAT_AREA] >= 0.01 * total) & (top >= low) & (top > main_bottom)
    hung[0] = hung[main] = False
    return lab, st, hung


def _drop_framed_backdrop(m: np.ndarray, ev: Evidence) -> np.ndarray:
    """Cut the floor framed by thin parts of the product: a body of the mask that hangs from
    the rest of it by thin parts only and looks like the backdrop.

    The legs and foot ring of a stool (a chair, a rack) close off the floor between them and
    under the ring; the floor there lies in the product's soft shadow (the backdrop's chroma,
    a few to 40 % darker: not plain backdrop), so ``_fill_holes`` filled it, and the stool
    carried a slab of floor (novel stools: IoU 0.5-0.85). ``_drop_enclosed_shadow`` judges
    such gaps one by one against faces of known products and leaves most of them; this step
    looks at the mask's shape first. Opened by a 9×9 disc, the mask falls apart into its
    bodies (``_body``): the seat, and the slab of floor with the legs and ring along its
    sides; thin parts (legs, a ring, a strap, a cable) are gone. A body other than the one
    with the most solid product (not the backdrop's colour, or black) that

    * lies under it (its top below the main body's bottom, and in the lower 70 % of the
      mask: the floor, not a part beside the body),
    * and looks like the backdrop where it has no product evidence (30 % of it or more: the
      rest is the legs and ring along and across it): 80 % of those pixels have the
      backdrop's chroma (under 0.75 of the threshold), no brighter than the backdrop (a
      white lamp shade is brighter) and not black,
    * and is not dark all through (the lighter quarter of those pixels over 0.6 of the
      backdrop: a lamp's base on its pole reads 0.49 there; a stool's floor 0.88-0.96, even
      on grey, where a leg's inside has no evidence either and reads 0.44),

    is cut down to its product: its pixels within 2 px of evidence that are dark (under 0.65
    of the backdrop), clearly coloured, or a thin line darker than the floor either side (a
    leg on a dark table), closed over a pixel, where that touches the rest of the mask (the
    legs and ring it frames). A body joined to the main one by more than thin parts (a mug's
    handle and the shadow in it lie against the mug) is one body and is not looked at."""
    box = _around(m, 5)
    if box is None:
        return m
    mb = m[box]
    r, chroma, tol = ev.ratio[box], ev.chroma[box], ev.tol[box]
    found = _hanging(mb, chroma, r)
    if found is None:
        return m
    lab, st, hung = found
    n = len(st)
    prod = ev.product[box]
    free = (mb > 0) & ~prod
    looks = free & (chroma < _FRAMED_CHROMA) & (r > 0.25) & (r < 1 + tol)
    n_free = np.bincount(lab.ravel(), weights=free.ravel(), minlength=n)
    n_looks = np.bincount(lab.ravel(), weights=looks.ravel(), minlength=n)
    area = st[:, cv2.CC_STAT_AREA].astype(np.float64)
    cut = np.zeros(mb.shape, bool)
    for i in np.flatnonzero(hung):
        if n_free[i] < _FRAMED_FREE * area[i] or n_looks[i] < _FRAMED_LOOKS * n_free[i]:
            continue
        comp = lab == i
        # Dark all through is a dark part of the product (a lamp's base on its pole: 0.47),
        # not the floor in shadow; the floor's share is lighter (a leg's inside on a grey
        # floor, no evidence there either, reads 0.44: the lower half is the legs).
        if float(np.percentile(r[comp & free], 75)) < _GAP_DARKEST:
            continue
        cut |= comp
    if not cut.any():
        return m
    # What of it is product: what is dark (the legs and ring: under 0.65 of the backdrop;
    # the floor's evidence along them, JPEG's colour bleed and the edges of the legs' own
    # shadows, 0.7-0.9) or clearly coloured, at its evidence (on a grey floor a leg's
    # inside is lit by its two edges only), closed over a pixel, where it joins the rest
    # of the mask.
    near_ev = cv2.dilate(prod.view(np.uint8), np.ones((5, 5), np.uint8)) > 0
    # ...or a thin line darker than the floor either side of it (a leg on a dark table):
    # the ratio's black-hat over an 11 px disc.
    line = cv2.morphologyEx(r, cv2.MORPH_BLACKHAT, _DISC11) > np.maximum(_FRAMED_LINE, 3 * tol)
    dark = near_ev & cut & ((r < _FRAMED_DARK) | (chroma >= _FRAMED_COLOUR) | line)
    keep = (cv2.morphologyEx(dark.view(np.uint8), cv2.MORPH_CLOSE, _CROSS) > 0) & cut
    rest = (mb > 0) & ~cut
    nk, kl = cv2.connectedComponents(keep.view(np.uint8), connectivity=8)
    if nk > 1:
        near = cv2.dilate(rest.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
        joined = np.zeros(nk, bool)
        joined[np.unique(kl[near & keep])] = True
        joined[0] = False
        keep = joined[kl]
    keep = cv2.morphologyEx((rest | keep).view(np.uint8), cv2.MORPH_OPEN, _CROSS) > 0
    out = m.copy()
    out[box] = (rest | (keep & cut)).view(np.uint8)
    return out


_DISC11 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))
_FRAMED_LINE = 0.12
_FRAMED_LOW = 0.3
_FRAMED_CHROMA = 0.75
_FRAMED_DARK = 0.65
_FRAMED_COLOUR = 2.0
_FRAMED_FREE = 0.3
_FRAMED_LOOKS = 0.8
"""``_drop_framed_backdrop``: a body is the floor when it starts below ``_FRAMED_LOW`` of the
mask's height, ``_FRAMED_FREE`` of it or more has no product evidence (the rest: the legs and
ring along and across it) and ``_FRAMED_LOOKS`` of that or more looks like the backdrop
(chroma under ``_FRAMED_CHROMA`` of the threshold); of it, the product is what is darker than
``_FRAMED_DARK`` of the backdrop (the legs: 0.3-0.6; the floor's evidence along them 0.7-0.9),
``_FRAMED_COLOUR`` times the chroma threshold off it, or a line ``_FRAMED_LINE`` darker than
the floor either side (the black-hat over ``_DISC11``)."""


def _open_pockets(img: np.ndarray, m: np.ndarray, bg: np.ndarray, ev: Evidence,
                  faces: np.ndarray | None = None) -> np.ndarray:
    """Give back the backdrop in narrow bays between parts of the product (a plant's leaves).

    Between thin or leafy parts a few pixels apart, the backdrop is kept as product: JPEG
    smears the parts' colour into it (4:2:0 chroma, several work pixels between crowded
    leaves: colour evidence), and the regions' 7 px closing and hole filling join the rest.
    The rim passes give back 3-4 px at most, so grey or lilac pockets stayed between the
    leaves (novel plants: IoU 0.80-0.88 at 640², 34 of 39 blind misses said high).

    JPEG smears colour, not brightness. A pixel of the region is judged backdrop when it lies
    between clearly coloured parts (within the closing, by a 15 px disc, of the pixels off
    the backdrop's colour), is off no colour of its own (its colour across the backdrop's is
    the nearby product's, a small share of it, ``_chroma_matte``; or it is the backdrop's
    chroma), has the backdrop's brightness (within its noise) and only a small share of the
    way to the product's brightness. Such pixels are cut where they form a part 3+ px across
    that opens to the outside of the region: a bay of the backdrop. Parts walled in all round
    are left to the hole rules (a pale label between a bottle's green parts looks the same).
    Not white on white (no coloured part to measure against). A part that has the colour of
    the solid product beside it is a face of it seen across a change of backdrop
    (``_face_across``): left, and marked in ``faces`` (bool, the frame's shape) when given."""
    box = _around(m, 8)
    if box is None:
        return m
    mb = m[box] > 0
    chroma, ratio, tol = ev.chroma[box], ev.ratio[box], ev.tol[box]
    # Clearly product: off the backdrop's colour *and* its brightness (or black). JPEG's
    # colour in the backdrop between leaves has the backdrop's brightness.
    solid = mb & (((chroma >= _POCKET_SOLID) & (np.abs(ratio - 1) > 2 * tol))
                  | (ratio < _POCKET_BLACK))
    solid = cv2.morphologyEx(solid.view(np.uint8), cv2.MORPH_OPEN, _CROSS)
    if not solid.any():
        return m
    # Only a pixel of the backdrop's brightness, not far off its colour, can be one.
    plain = mb & (solid == 0) & (np.abs(ratio - 1) < tol) & (chroma < _POCKET_CHROMA)
    # Between coloured parts: what closing them (and the colour smeared next to them) adds.
    seed = solid | (mb & (chroma >= 1.0)).view(np.uint8)
    between = (cv2.morphologyEx(seed, cv2.MORPH_CLOSE, _DISC15) > 0) & plain
    if cv2.countNonZero(between.view(np.uint8)) < 4:
        return m  # (most products: no such pixel between their parts)
    rim = plain & (cv2.erode(mb.view(np.uint8), np.ones((5, 5), np.uint8)) == 0)
    cand = between | rim
    # The product's colour and brightness next to each candidate (the blur reaches 10 px).
    sub = _around(cand, 10)
    ys, xs = np.nonzero(cand[sub])
    ib = img[box][sub]
    num, den = _spread_parts(ib, solid[sub] > 0, 4.0)
    k = 2 * round(2.5 * 4.0) + 1
    rnum = cv2.GaussianBlur(ratio[sub] * (solid[sub] > 0), (k, k), 4.0)
    d = den[ys, xs]
    dd = np.maximum(d, 1e-3)
    fg = num[ys, xs] / dd[:, None]
    r_fg = rnum[ys, xs] / dd
    t, trust, resid = _chroma_matte(ib[ys, xs], bg[box][sub][ys, xs], fg)
    ys, xs = ys + sub[0].start, xs + sub[1].start
    r = ratio[ys, xs]
    c = chroma[ys, xs]
    # Share of the way from the backdrop's brightness to the product's next to it (none
    # where the product has the backdrop's brightness: nothing to tell by).
    step = 1 - r_fg
    share = np.where(np.abs(step) >= 0.15, (1 - r) / np.where(np.abs(step) >= 0.15, step, 1), 1.0)
    smeared = (trust > 0.5) & (t < _POCKET_SHARE) & (resid < 1.0)
    look = (smeared | (c < _POCKET_NEUTRAL)) & (share < 0.25) & (d > 0.01)
    if not look.any():
        return m
    lk = np.zeros_like(mb)
    lk[ys[look], xs[look]] = True
    n, lab, st, _ = cv2.connectedComponentsWithStats(lk.view(np.uint8), connectivity=8)
    outside = cv2.dilate((~mb).view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    keep = np.zeros(n, bool)
    keep[np.unique(lab[outside & lk])] = True
    keep &= np.bincount(lab[between & lk], minlength=n) >= 4
    keep[0] = False
    for i in np.nonzero(keep)[0]:
        x, y, w, h = st[i, :4]
        c8 = np.pad((lab[y:y + h, x:x + w] == i).view(np.uint8), 1)
        # 3+ px across somewhere: a 1 px seam where a chrome band's grey crosses the
        # backdrop's is no bay (glossy 5 at 640²).
        if float(cv2.distanceTransform(c8, cv2.DIST_L2, 3).max()) < _POCKET_HALF_WIDTH:
            keep[i] = False
    if keep.any() and ev.lum_bg is not None:
        face = _face_across(img[box], lab, st, keep, solid, ev.lum_bg[box])
        if face.any():
            keep &= ~face
            if faces is not None:
                faces[box] |= face[lab] & between
    cut = keep[lab] & between
    if not cut.any():
        return m
    out = m.copy()
    out[box][cut] = 0
    return out


def _face_across(ib: np.ndarray, lab: np.ndarray, st: np.ndarray, which: np.ndarray,
                 solid: np.ndarray, lum_bg: np.ndarray) -> np.ndarray:
    """Of the parts ``which`` (labels of ``lab``), those that are a face of the product running
    on across a change of backdrop (bool per label): a light sole's strip above a table's
    horizon, against a white wall.

    The sole's part on the table is off its backdrop (solid); just above the horizon the
    same sole has the wall's colour and brightness, and between the blue upper and its own
    part below it was taken for the wall: a bay (``_open_pockets``) or a part that looks like
    the backdrop (``_fill_sandwiched``) (textured 19099, two plane 19053 at 640²: the strip
    lost along the sneaker, IoU 0.90 / 0.89, said high / low). The backdrop's colour is one
    the product beside it cannot have where the backdrop is the same: so a part whose colour
    (median) the solid product 3 px around it has (within ``_FACE_ACROSS_TOL`` levels in every
    channel, over ``_FACE_ACROSS_SHARE`` of those pixels) is that product. A part found so
    counts as solid for the parts next to it (a strip in pieces). The backdrop must change
    between them: its brightness (``lum_bg``, the model's) at the part and at a tenth of the
    matching pixels ``_FACE_ACROSS_BG`` levels apart or more (the wall and the table). On one sweep
    the shaded sweep beside a light grey headband matched the band (novel cast shadows 414:
    a wedge inside the band filled, 0.955 -> 0.875)."""
    face = np.zeros(len(st), bool)
    ref = solid > 0
    origin = lum_bg.copy()
    left = [int(i) for i in np.nonzero(which)[0] if i > 0]
    changed = True
    while left and changed:
        changed = False
        for i in list(left):
            x, y, w, h = st[i, :4]
            y0, x0 = max(y - 3, 0), max(x - 3, 0)
            y1, x1 = min(y + h + 3, lab.shape[0]), min(x + w + 3, lab.shape[1])
            c = lab[y0:y1, x0:x1] == i
            ring = (cv2.dilate(c.view(np.uint8), _SQ7) > 0) & ~c & ref[y0:y1, x0:x1]
            if not ring.any():
                continue
            col = np.median(ib[y0:y1, x0:x1][c], axis=0)
            d = np.abs(ib[y0:y1, x0:x1][ring] - col).max(1)
            match = d <= _FACE_ACROSS_TOL
            if float(match.mean()) < _FACE_ACROSS_SHARE:
                continue
            # The backdrop under the matching pixels farthest from the part's (a tenth of
            # them: the rest may lie in the horizon's blend). A part found so carries the
            # backdrop of the solid product it was matched to.
            here = float(np.median(lum_bg[y0:y1, x0:x1][c]))
            lo, hi = np.percentile(origin[y0:y1, x0:x1][ring][match], [10, 90])
            there = float(lo if here - lo >= hi - here else hi)
            if abs(here - there) >= _FACE_ACROSS_BG:
                face[i] = True
                ref[y0:y1, x0:x1] |= c
                origin[y0:y1, x0:x1][c] = there
                left.remove(i)
                changed = True
    return face


_SQ7 = np.ones((7, 7), np.uint8)
_FACE_ACROSS_TOL = 8.0
_FACE_ACROSS_SHARE = 0.25
_FACE_ACROSS_BG = 20.0


_DISC15 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
_POCKET_SOLID = 2.0
"""``_open_pockets``: chroma (threshold units) from which a pixel off the backdrop's
brightness is clearly product."""
_POCKET_BLACK = 0.42
_POCKET_SHARE = 0.5
"""...a pocket pixel's colour across the backdrop's is at most this share of the product's
next to it (JPEG's smear)..."""
_POCKET_NEUTRAL = 0.3
"""...or its chroma is under this (the backdrop's own colour: a chrome band's grey, 0.2-0.5
off, is not)..."""
_POCKET_CHROMA = 4.0
_POCKET_HALF_WIDTH = 1.5



def _open_shaded_holes(m: np.ndarray, ev: Evidence) -> np.ndarray:
    """Give back a hole walled in all round whose top is plain backdrop and which darkens
    downward: the backdrop seen under a bridge (sunglasses: between the lenses, under the
    bridge, over the folded arms), lit at the top, in the product's own shadow lower down.

    Under half of such a hole is plain backdrop, so ``_fill_holes`` fills it (novel
    sunglasses: ~5 % of the product kept, IoU 0.92-0.93, said `high`). A hole is given back
    when it is the backdrop's colour throughout (chroma under 1 and not darker than a
    shadow), its top rows are the backdrop's brightness, its row brightness falls
    ``_SHADED_DROP`` or more from top to bottom without rising again (a shadow darkens
    towards what casts it) and each row is even (a shadow is smooth across). A face of the
    product with the backdrop's colour (a cream label between a bottle's parts) is lit the
    same top to bottom, or brighter at the top of its own shading and not the backdrop's
    brightness there. Not white on white."""
    box = _around(m, 2)
    if box is None:
        return m
    mb = m[box] > 0
    ratio, chroma, tol = ev.ratio[box], ev.chroma[box], ev.tol[box]
    # Within the outer outline: a hole may be open in part already (its shadowed foot cut by
    # ``_drop_enclosed_shadow``, its plain top kept): it is judged whole.
    outer = np.pad((~mb).view(np.uint8), 1, constant_values=1)
    cv2.floodFill(outer, None, (0, 0), 2)
    inner = outer[1:-1, 1:-1] != 2
    look = (chroma < 1.0) & (ratio >= _SHADED_FLOOR) & (ratio < 1.0 + tol)
    cand = cv2.morphologyEx((inner & look).view(np.uint8), cv2.MORPH_OPEN, _SQ3)
    if cv2.countNonZero(cand & mb.view(np.uint8)) < _SHADED_MIN_PX:
        return m
    n, lab, st, _ = cv2.connectedComponentsWithStats(cand, connectivity=4)
    outside = cv2.dilate((~inner).view(np.uint8), _SQ3) > 0
    walled = np.ones(n, bool)
    walled[np.unique(lab[outside])] = False
    walled[0] = False
    # What the mask keeps of it 2 px or more inside: not the rim the mask keeps round a hole
    # it left open already (the floor inside a stool's thin foot ring: cut, the ring's own
    # edge went with it, novel textured 46: 0.935 -> 0.922).
    deep = cv2.erode(mb.view(np.uint8), _SQ5) > 0
    kept = np.bincount(lab[deep], minlength=n)
    n_in = max(int(cv2.countNonZero(mb.view(np.uint8))), 1)
    walled &= (kept >= _SHADED_MIN_PX) & (kept <= _SHADED_MAX_SHARE * n_in)
    cut = np.zeros(n, bool)
    for i in np.nonzero(walled)[0]:
        x, y, w, h = st[i, :4]
        if h < _SHADED_MIN_ROWS:
            continue
        comp = lab[y:y + h, x:x + w] == i
        r = ratio[y:y + h, x:x + w]
        t = float(np.median(tol[y:y + h, x:x + w][comp]))
        cnt = comp.sum(1)
        rows = cnt >= 2
        if rows.sum() < _SHADED_MIN_ROWS:
            continue
        full = np.array([np.median(r[j][comp[j]]) if rows[j] else np.nan for j in range(h)])
        # (The first and last rows mix with the walls above and below.)
        med = full[rows][1:-1]
        # (A 3-row running median: one row of the bridge's mixed rim is no rise.)
        med = np.median(np.stack([med[:-2], med[1:-1], med[2:]]), 0) if len(med) > 4 else med
        q = max(2, len(med) // 4)
        top, bottom = float(np.median(med[:q])), float(np.median(med[-q:]))
        if abs(top - 1.0) > max(t, 0.015) or top - bottom < _SHADED_DROP:
            continue
        # Never brighter again further down (beyond the noise), and even across each row.
        rise = med - np.minimum.accumulate(med)
        if float(rise.max()) > max(t, 0.02):
            continue
        even = comp & rows[:, None]
        dev = np.abs(r - np.nan_to_num(full)[:, None])[even]
        if float(np.median(dev)) > max(t, 0.02):
            continue
        cut[i] = True
    if not cut.any():
        return m
    gone = cut[lab] & mb
    out = m.copy()
    out[box][gone] = 0
    return out


_SHADED_FLOOR = 0.55
"""``_open_shaded_holes``: no pixel of a shaded hole is darker than this share of the
backdrop's brightness (the soft shadow under sunglasses' bridge: 0.84-0.9 at its foot)."""
_SHADED_DROP = 0.03
"""...its row brightness falls by this much or more from its top rows to its bottom rows (a
faint shadow under the bridge in low light: 0.04)..."""
_SQ5 = np.ones((5, 5), np.uint8)
_SHADED_MIN_PX = 40
_SHADED_MIN_ROWS = 8
_SHADED_MAX_SHARE = 0.25
"""...and what of it is kept is 40 px or more and at most this share of the product's region
(a hole, not the product)."""

def _put(m: np.ndarray, box: tuple[slice, slice], add: np.ndarray) -> np.ndarray:
    """``m`` with ``add`` (in ``box``) set, or ``m`` itself when there is nothing to add."""
    if not add.any():
        return m
    out = m.copy()
    out[box][add] = 1
    return out


def _steps_down_under(mb: np.ndarray, r3: np.ndarray, tol: np.ndarray, reach: int) -> bool:
    """Whether the table steps *down* anywhere under the mask ``mb`` (within ``reach`` px
    under each column's lowest pixel): a shadow-coloured pixel with one 2-6 px under it darker
    by ``_SOLE_DROP`` or more, in ``_SOLE_COLUMNS`` of the columns or more. Without it
    ``_restore_lit_parts`` has nothing to give back (its parts have the table darker right
    under them), and most photos (a shadow lightening away from the product) end here."""
    hb = mb.shape[0]
    cols, low = _lowest(mb)
    if not len(cols):
        return False
    rows = low[None, :] + np.arange(1, reach + 7)[:, None]
    ok = rows < hb
    rows = np.minimum(rows, hb - 1)
    prof = np.where(ok, r3[rows, cols[None, :]], np.inf)
    shadowy = prof < 1.0 - 0.5 * tol[rows, cols[None, :]]
    # The darkest of 2-6 px further down, for each pixel of the profile.
    under = np.full_like(prof, np.inf)
    for d in range(2, 7):
        under[:-d] = np.minimum(under[:-d], prof[d:])
    hit = (shadowy & (under < prof - _SOLE_DROP))[:reach].any(0)
    return bool(hit.mean() >= _SOLE_COLUMNS)


_SOLE_CLOSE = 11
"""``_restore_lit_parts`` closes the mask and the evidence near it with a disc this wide (px):
a sole's outline has gaps of several px where its corners meet the table at its grey."""
_SOLE_SHORT = 2.0
"""The band under the outline stops this many px short of the lit step (the step's own edge
evidence lies on the table's side of it)."""
_SOLE_GROW = 3
"""A candidate part takes in the evidence around it within this many px (its outline)."""
_SOLE_DROP = 0.04
_SOLE_COLUMNS = 0.05
"""``_steps_down_under``: a drop of this much brightness ratio, in this share of the mask's
columns (the soles: 0.05-0.3 deep, across most of the sneaker)."""
_SHADOW_LOW = 0.45
"""``_drop_cast_shadow`` and ``_restore_lit_parts`` look at the lower 45 % of the mask: the
floor, where a cast shadow lies."""


def _lowest(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The columns where ``m`` has pixels, and ``m``'s lowest row in each."""
    cols = np.nonzero(m.any(0))[0]
    return cols, m.shape[0] - 1 - np.argmax(m[::-1, cols], axis=0)


def _darker_under(comp: np.ndarray, free: np.ndarray, r: np.ndarray, level: float) -> float:
    """Share of ``comp``'s columns where the table steps down under it: the brightness ratio
    ``r`` 2-6 px under its lowest pixel, where ``free`` (not the product), drops below
    ``level`` (of the columns with such pixels; all three arrays share a shape)."""
    hh = comp.shape[0]
    cols, lo = _lowest(comp)
    if not len(cols):
        return 0.0
    dark = np.zeros(len(cols), bool)
    seen = np.zeros(len(cols), bool)
    for d in range(2, 7):
        yy = lo + d
        ok = yy < hh
        ok[ok] &= free[yy[ok], cols[ok]]
        seen |= ok
        dark[ok] |= r[yy[ok], cols[ok]] < level
    return float(dark[seen].mean()) if seen.any() else 0.0


def _flat_face(r: np.ndarray, tol: float) -> bool:
    """One flat face: its brightness ratios (``r``, a part's) from the 10th to the 90th
    percentile within ``tol`` (a sole: 0.3-0.5 of the noise; a shadow's penumbra, a ramp: 6)."""
    lo, hi = np.percentile(r, [10, 90])
    return bool(hi - lo <= tol)


def _product_under(comp: np.ndarray, m: np.ndarray, h: int, reach: int = 3) -> float:
    """Fraction of ``comp``'s columns (a part of the mask ``m``, whose first ``h`` rows share
    ``comp``'s box) with other mask pixels within ``reach`` rows under its lowest pixel."""
    cols, low = _lowest(comp)
    if not len(cols):
        return 0.0
    hit = np.zeros(len(cols), bool)
    for d in range(1, reach + 1):
        yy = low + d
        ok = yy < m.shape[0]
        hit[ok] |= m[yy[ok], cols[ok]]
    return float(hit.mean())


def _darkens_into(comp: np.ndarray, m: np.ndarray, solid: np.ndarray, ratio: np.ndarray,
                  tol: np.ndarray, h: int, reach: int = 12) -> float:
    """Fraction of ``comp``'s columns (boxes as in ``_product_under``) where, going down from
    its lowest pixel, the mask ``m`` goes on without a break and without getting lighter
    (brightness ratio at most the darkest so far plus its noise) until it reaches ``solid``,
    darker than where it began, within ``reach`` rows: the part is the top of the product's
    own shading (a grey sheen fading into a black case), not a shadow on the floor, under
    which the mask ends or the shadow's rim brightens towards the backdrop."""
    cols, low = _lowest(comp)
    if not len(cols):
        return 0.0
    start = ratio[low, cols]
    darkest = start.copy()
    alive = np.ones(len(cols), bool)
    hit = np.zeros(len(cols), bool)
    for d in range(1, reach + 1):
        yy = low + d
        alive &= yy < m.shape[0]
        yc = np.minimum(yy, m.shape[0] - 1)
        r = ratio[yc, cols]
        noise = tol[yc, cols]
        alive &= m[yc, cols] & (r <= darkest + noise)
        # Reached, and darker than where the walk began: a noisy pixel of a shadow's own
        # grey that reads as coloured (cast shadows 9102 at 800², a bag's shadow) is not.
        hit |= alive & solid[yc, cols] & (r < start - noise)
        alive &= ~hit
        darkest = np.minimum(darkest, r)
        if not alive.any():
            break
    return float(hit.mean())


_WHITE_EVIDENCE = 0.56
"""White on white is found by little more than its outline: its product evidence is at most
0.37 of its region on the tuning sets (white boxes 0.06-0.14, bottles and mugs 0.13-0.37 at
640²). A product of thin parts whose region took in the backdrop and its own shadow between
them (a stool: legs, foot ring) looks white by its median, but is 0.55-0.71 evidence (novel
seeds 10-39). A white lamp with a dark base is 0.38-0.52: the margin is thin, and kept on the
white side (a white lamp taken as not white lost its shade, 0.96 -> 0.56, said high; a stool
taken as white keeps the floor between its legs, mostly said low)."""


def _mostly_outline(m: np.ndarray, ev: Evidence) -> bool:
    """Under ``_WHITE_EVIDENCE`` of ``m`` is product evidence."""
    sel = m > 0
    return bool(np.count_nonzero(ev.product & sel) < _WHITE_EVIDENCE * np.count_nonzero(sel))


def _whiteish(m: np.ndarray, ev: Evidence) -> bool:
    """The product has the backdrop's colour (white on white): its region found by colour
    is mostly its outline."""
    sel = m > 0
    return _median_beyond(ev.chroma[sel], 1.0, -1) and _median_beyond(ev.ratio[sel], 0.7, 1)


def _median_beyond(x: np.ndarray, c: float, side: int) -> bool:
    """``np.median(x) < c`` (side -1) or ``np.median(x) > c`` (side 1) of a float32 array, the
    same answer, mostly from a count: the two middle values of the sorted ``x`` on the same
    side of ``c`` decide it (their float32 mean stays on that side), so only a count of
    values past ``c`` is needed, not numpy's partition (~1 ms for a white product's 10⁵ work
    pixels, five times a cutout and its preset's check). Split by ``c`` (one middle value on
    each side), or NaN in ``x`` (the median is NaN: False): numpy's median decides."""
    n = x.size
    if x.dtype != np.float32 or n == 0:
        return bool(np.median(x) < c) if side < 0 else bool(np.median(x) > c)
    cf = np.float32(c)  # what numpy 2 compares the float32 median with
    past = np.count_nonzero(x < cf if side < 0 else x > cf)
    if past + np.count_nonzero(x >= cf if side < 0 else x <= cf) != n:
        return False  # NaN in x: np.median is NaN, which compares False
    lo, hi = (n - 1) // 2, n // 2  # the middle values' ranks (equal when n is odd)
    # side -1: the middle values are both under c when more than hi values are, both not
    # when at most lo are. side 1: both over when more than n - 1 - lo are, both not when
    # at most n - 1 - hi are.
    need = hi if side < 0 else n - 1 - lo
    if past > need:
        return True
    if past <= (lo if side < 0 else n - 1 - hi):
        return False
    return bool(np.median(x) < c) if side < 0 else bool(np.median(x) > c)


def _silhouette_edges(img: np.ndarray, band_mask: np.ndarray,
                      hband: np.ndarray | None) -> np.ndarray:
    """Sharp steps of brightness, with hysteresis: faint parts of an outline (a white face a
    few levels off a white sweep) are kept where they continue a clear one. A difference of
    Gaussians cancels a soft shadow's ramp, so its outline does not count."""
    lum = cv2.transform(img, _MEAN3)
    dog = cv2.GaussianBlur(lum, (0, 0), 0.7) - cv2.GaussianBlur(lum, (0, 0), 1.6)
    g = _grad(dog)
    noise = max(float(np.median(g[band_mask])) if band_mask.any() else 0.3, 0.15)
    ridge = g >= 0.7 * cv2.dilate(g, np.ones((3, 3), np.uint8))
    weak = ((g > 2.5 * noise) & ridge).astype(np.uint8)
    strong = (g > 6.0 * noise) & ridge
    if hband is not None:
        weak[hband] = 0
    n, labels = cv2.connectedComponents(weak, connectivity=8)
    keep = np.zeros(n, bool)
    keep[np.unique(labels[strong & (weak > 0)])] = True
    keep[0] = False
    return keep[labels]


def _close_silhouette(m: np.ndarray, edges: np.ndarray, ev: Evidence, gap: int = 2,
                      lifted: np.ndarray | None = None, reach: int = 5,
                      see_through: bool = True) -> np.ndarray:
    """A white product on a white sweep: its lit faces look like the backdrop and its shaded
    faces like a shadow, so the evidence finds little more than its outline. What the
    outline encloses is product: within the convex hull of the evidence, the outline's sharp
    edges (``edges`` touching it, or reaching within ``reach`` pixels of the hull) and its
    faintly lifted faces (``lifted``), everything farther than ``gap`` pixels from them falls
    into parts, and a part is backdrop when it is open to the outside along the hull's side
    where no outline runs (beside a bottle's neck, under a mug's handle, with its shadow), or
    nearly all plain backdrop walled in by the outline (a handle's hole). A lit face is
    bounded by its own shading, not by an edge: it stays product."""
    h, w = m.shape
    near = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))) > 0
    # Edges touching the product are its outline; a lit face a few levels brighter than the
    # sweep (a carton's top: too faint per pixel, clear over a few pixels around) joins the
    # same way. One labelling for both.
    cand = edges | lifted if lifted is not None else edges
    n, labels = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
    touching = np.zeros(n, bool)
    touching[labels[near & cand]] = True
    touching[0] = False
    joined = touching[labels]
    own = joined & edges
    # A hard cast shadow's rim is product evidence too (a sharp step), and the hull of the
    # evidence took the shadow in with it (a bottle's or a mug's shadow beside its base kept:
    # IoU 0.68-0.92). Pieces of evidence with a shadow's colour that touch no outline are
    # left out of the seed (a white product's own outline pixels touch its edges).
    shadowy = (ev.chroma < 0.6) & (ev.ratio > 0.25) & (ev.ratio < 1 - ev.tol)
    nm, lm = cv2.connectedComponents((m > 0).astype(np.uint8), connectivity=8)
    if nm > 1:
        cnt = np.bincount(lm.ravel(), minlength=nm)
        shc = np.bincount(lm.ravel(), weights=shadowy.ravel(), minlength=nm)
        tch = np.zeros(nm, bool)
        tch[lm[cv2.dilate(joined.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0]] = True
        drop = (shc >= 0.8 * cnt) & ~tch
        drop[0] = False
        if drop.any():
            m = ((m > 0) & ~drop[lm]).astype(np.uint8)
    core = (m > 0) | joined
    pts = _row_ends(core)
    if pts is None:
        return m
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
    # A piece of outline cut off from the rest where a shaded face meets its own shadow at
    # the same grey (the bottom of a bottle beyond its shaded side) does not touch the
    # evidence, and the hull cut the face's corner off along a chord: outline pieces that
    # reach within ``reach`` pixels of the hull are the product's too (once).
    n_e, lab_e = cv2.connectedComponents(edges.astype(np.uint8), connectivity=8)
    hit = np.zeros(n_e, bool)
    sq = np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)
    hit[lab_e[(cv2.dilate(hull, sq) > 0) & edges]] = True
    hit[0] = False
    extra = hit[lab_e] & ~joined
    if extra.any():
        joined = joined | extra
        own = joined & edges
        core = core | extra
        hull = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(hull, cv2.convexHull(_row_ends(core)), 1)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * gap + 1, 2 * gap + 1))
    inside = hull > 0
    free = inside & ~(cv2.dilate(core.astype(np.uint8), k) > 0)
    n, labels = cv2.connectedComponents(free.astype(np.uint8), connectivity=4)
    counts = np.bincount(labels.ravel(), minlength=n)
    bgc = np.bincount(labels.ravel(), weights=ev.bg_like.ravel(), minlength=n)
    # The backdrop seen through a hole is walled in by the outline; a concavity (beside a
    # bottle's neck, under a mug's handle, with its shadow) is open to the outside along the
    # hull's side where no outline runs; a lit face of a white product is bounded by its own
    # shading: no edge, and at most a short stretch of the hull's side (a faint shoulder).
    at_edge = cv2.dilate(own.astype(np.uint8), k) > 0
    at_hull = ~(cv2.erode(hull, k) > 0)
    spread = cv2.dilate(labels.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
    rim = ~free & (spread > 0) & inside
    rc = np.maximum(np.bincount(spread[rim], minlength=n), 1)
    # The component's own pixels on the hull's side, away from any outline: its open side.
    side = free & (hull > 0) & ~(cv2.erode(hull, _CROSS) > 0) & ~at_edge
    oc = np.bincount(labels[side], minlength=n)
    open_frac = oc / (rc + oc)
    walled = (np.bincount(spread[rim & (at_edge | at_hull)], minlength=n) + oc) / (rc + oc)
    plain = (open_frac >= 0.2) | ((bgc / np.maximum(counts, 1) >= 0.7) & (walled >= 0.6))
    if lifted is not None and see_through:
        # Walled by the outline or by a lifted or tinted face (a headband's inner side).
        wall = at_edge | at_hull | (cv2.dilate((joined & ~edges).astype(np.uint8), k) > 0)
        walled_f = (np.bincount(spread[rim & wall], minlength=n) + oc) / (rc + oc)
        plain |= _see_through(labels, n, counts, bgc, walled, walled_f, ev, inside)
    plain[0] = False
    outside = (plain[labels] & free) | ~inside
    # A part that is not open as a whole may still hold a stretch of plain backdrop that is
    # (a wedge of sweep beside a bottle's neck, joined to the lit shoulder next to it, which
    # has no edge against the sweep): the plain backdrop of the rest, taken apart, by the same
    # test. Taken apart twice: as plain backdrop pixels, and as those whose 5×5 mean is
    # within a level of the backdrop model's (opened: a lit band of the bottle a level off
    # the sweep no longer joins the wedge to the body through the edgeless neck).
    rest = free & ~outside & ev.bg_like
    lum_bg = ev.lum_bg if ev.lum_bg is not None else 250.0
    flat = np.abs(cv2.blur(ev.ratio - 1.0, (5, 5))) * lum_bg < 1.0
    rests = (rest, cv2.morphologyEx((rest & flat).astype(np.uint8), cv2.MORPH_OPEN,
                                    np.ones((3, 3), np.uint8)) > 0)
    for part in rests:
        if not part.any():
            continue
        n2, lab2 = cv2.connectedComponents(part.astype(np.uint8), connectivity=4)
        sp2 = cv2.dilate(lab2.astype(np.float32), np.ones((3, 3), np.uint8)).astype(np.int32)
        rim2 = ~part & (sp2 > 0) & inside
        rc2 = np.bincount(sp2[rim2], minlength=n2)
        oc2 = np.bincount(lab2[side & part], minlength=n2)
        open2 = oc2 / np.maximum(rc2 + oc2, 1)
        open2[0] = 0
        outside |= (open2 >= 0.2)[lab2] & part
    # Grow the backdrop back over the closing's margin, never across the outline itself nor
    # into a lifted face (a carton's top a few levels over the sweep: the growth and the rim
    # below ate its far edge, 4 work pixels of it, on every carton).
    face = joined & ~edges if lifted is not None else np.zeros_like(joined)
    grow_into = ~(own & ~ev.bg_like) & ~(m > 0) & ~face
    for _ in range(gap + 1):
        outside = (cv2.dilate(outside.astype(np.uint8), _CROSS) > 0) & grow_into | outside
    out = (~outside).astype(np.uint8)
    # The outline's ridge has a side lobe a pixel outside the product: the closing's rim is
    # given back where it is plain backdrop, or shadow-coloured and not product evidence.
    rim = (out > 0) & (cv2.erode(out, _CROSS) == 0) & (ev.bg_like | ev.shadow_like & ~(m > 0))
    out[rim & ~face] = 0
    return out


def _shading_goes_up(m: np.ndarray, ev: Evidence, sigma: float) -> np.ndarray:
    """White on white: give back what the outline's closing left out straight above the
    product where the product's own shading goes on up the column (a white bottle's lit neck
    and shoulder: a vertical cylinder lit from the side is shaded column by column, the same
    down the body and the neck, and where that shade is within a level or two of the sweep
    the neck has no edge, no tint and no lift, so the closing let it go with the wedge of sweep
    beside it; known 5443, 5021, 15180).

    From each free pixel inside the product's hull with the product straight under it, the
    product's brightness in that column (``B``: the median of its deep pixels among the
    ``_UP_BODY`` rows under it, at least ``_UP_MIN_BODY`` of them in one run, and no farther
    than ``_UP_MAX_OFF`` levels from the sweep: not a cap, not a dark base) is followed upwards:
    a pixel is the product's while its brightness (a ``_UP_WIN``-row mean down the column) is
    nearer ``B`` than the sweep model's, by half their gap, where that gap is at least
    ``_UP_MIN_OFF`` levels (and twice the noise); where the gap is narrower (the sweep's
    brightness crossing the product's), while a 3-column mean is within ``_UP_KEEP`` levels of
    ``B`` and nearer it than the sweep, once the walk has started, and only under more of the
    product in the column (a cap over a neck). A wedge of sweep beside a
    neck reads the sweep's brightness and stops the walk; a cast shadow is not walked into from
    a thin rim or a kept strip of shadow (the body under a start must be deep)."""
    h, w = m.shape
    mb = m > 0
    pts = _row_ends(mb)
    if pts is None:
        return m
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(pts), 1)
    # Starts: a free pixel inside the hull with the product straight under it.
    start = ~mb[:-1] & mb[1:] & (hull[:-1] > 0)
    ys, xs = np.nonzero(start)
    if not len(ys):
        return m
    lum = ev.ratio * ev.lum_bg
    deep = cv2.erode(m, np.ones((5, 5), np.uint8)) > 0
    # The run of product under each start (``_UP_BODY`` rows at most) and its deep pixels.
    below = ys[:, None] + 1 + np.arange(_UP_BODY)[None, :]
    inb = below < h
    yb = np.minimum(below, h - 1)
    xb = np.broadcast_to(xs[:, None], yb.shape)
    run = np.cumprod(inb & mb[yb, xb], axis=1).astype(bool)
    dp = run & deep[yb, xb]
    ok = (run.sum(1) >= _UP_MIN_BODY) & (dp.sum(1) >= 4)
    if not ok.any():
        return m
    ys, xs, yb, xb, dp = ys[ok], xs[ok], yb[ok], xb[ok], dp[ok]
    vals = np.where(dp, lum[yb, xb], np.nan)
    body = np.nanmedian(vals, axis=1)
    lum_v = cv2.blur(lum, (1, _UP_WIN))
    lum_b = cv2.blur(lum, (3, _UP_WIN))
    sweep_v = cv2.blur(ev.lum_bg, (1, _UP_WIN))
    ok = np.abs(body - sweep_v[ys, xs]) <= _UP_MAX_OFF
    ys, xs, body = ys[ok], xs[ok], body[ok]
    min_off = max(_UP_MIN_OFF, 2.0 * sigma)
    # Product somewhere above in the column (a cap over the neck, a case over a strap): where
    # the gap is narrow, the walk goes on only between parts of the product. Beside a neck, a
    # wedge of sweep at the product's level has nothing above it (known 5114 at 800²: a finger
    # of sweep walked up beside the neck to the cap's height, 0.985 -> 0.970).
    held = np.cumsum(mb, axis=0) > 0
    out = None
    going = np.ones(len(ys), bool)
    walked = np.zeros(len(ys), np.int32)
    steps = []
    for i in range(h):
        y = ys - i
        going &= y >= 0
        yc = np.maximum(y, 0)
        going &= ~mb[yc, xs] & (hull[yc, xs] > 0)
        if not going.any():
            break
        s = sweep_v[yc, xs]
        gap = np.abs(body - s)
        clear = gap >= min_off
        v = lum_v[yc, xs]
        vb = lum_b[yc, xs]
        near = np.where(clear, np.abs(v - body) < 0.5 * gap,
                        (i > 0) & held[yc, xs] & (np.abs(vb - body) < np.abs(vb - s))
                        & (np.abs(vb - body) < _UP_KEEP))
        going &= near
        walked += going
        if going.any():
            steps.append((y[going], np.nonzero(going)[0]))
    # A walk of a pixel or two is the column mean reaching over the outline (the 7 rows take
    # in the product under the first pixel above it: a white box's top edge grew a one-pixel
    # rim, a halo in the composite).
    long = walked >= _UP_MIN_WALK
    for yy, k in steps:
        keep = long[k]
        if keep.any():
            if out is None:
                out = m.copy()
            out[yy[keep], xs[k[keep]]] = 1
    if out is None:
        return m
    # Single columns the walk stopped short in (noise), between walked columns a few pixels
    # apart on the same row: a neck is one face across.
    added = (out > m).astype(np.uint8)
    across = cv2.morphologyEx(added, cv2.MORPH_CLOSE, np.ones((1, _UP_ACROSS), np.uint8))
    out |= across & (hull > 0) & ~mb
    return cv2.morphologyEx(out, cv2.MORPH_OPEN, _CROSS) | m


_UP_MIN_WALK = 3
"""A walk shorter than this many rows is dropped (the column mean reaching over the outline)."""
_UP_ACROSS = 5
"""Columns walked this many pixels apart (a horizontal closing) take the pixels between."""
_UP_WIN = 7
"""Rows of the mean down a column that the walk up ``_shading_goes_up`` reads."""
_UP_BODY = 12
"""Rows under a start that give the product's brightness in its column..."""
_UP_MIN_BODY = 8
"""...of which at least this many in one run under it (a rim or a strip of kept shadow is
thinner), four of them deep (5x5 inside the mask)."""
_UP_MAX_OFF = 12.0
"""A product brightness farther from the sweep than this (levels) is not walked from: the
outline or the evidence has whatever is that far off."""
_UP_MIN_OFF = 1.5
"""Where the product is this many levels (and twice the noise) off the sweep, a pixel must be
nearer the product's brightness by half the gap; a lit neck's shoulder: 2-4 levels."""
_UP_KEEP = 1.0
"""Where the gap is narrower, a 3-column mean within this many levels of the product's
brightness (and nearer it than the sweep) goes on the walk already started."""


def _neutral_sweep(bg: np.ndarray, band_mask: np.ndarray) -> bool:
    """The backdrop is a neutral sweep (white, grey, or white in dim light): the median
    spread of its channels over the border band is under ``_NEUTRAL_SPREAD`` levels (the
    white sweeps of the tuning and novel sets: 2-3). The white-on-white faces
    (``_white_tint``, ``_see_through``, ``_keep_white_faces``) read a white product against
    a white sweep by hue; where "white on white" was decided on a coloured scene (a plant on
    a brown wood table under a beige wall, its pot as bright as the wood: spread 59-81) the
    see-through holes shrank the closed silhouette under the growth check's limit and kept
    bands of the table (novel textured 200 at 640²: 0.901 -> 0.291 with them)."""
    if not band_mask.any():
        return True
    b = bg[band_mask]
    # (The channels' spread by element-wise maxima and minima, its median from a count: the
    # same answer as numpy's reductions over an axis of 3 and median, several times faster.)
    spread = _max3(b) - np.minimum(np.minimum(b[:, 0], b[:, 1]), b[:, 2])
    return _median_beyond(spread, _NEUTRAL_SPREAD, -1)


_NEUTRAL_SPREAD = 20.0


def _white_tint(img: np.ndarray, bg: np.ndarray, ev: Evidence, band_mask: np.ndarray,
                t_chroma: float | np.ndarray) -> np.ndarray:
    """Faces of a white product that differ from a white sweep by their hue alone.

    A white product is rarely the sweep's exact white: a strap, a headband or a shade's lit
    side a few levels off the sweep is off its colour by a fifth to a third of the product
    threshold on every pixel, far under it per pixel but steady over a 7×7 mean, where the
    plain sweep and a cast shadow (the sweep, darker) stay near zero (novel white on white
    seeds 0-119: faces 0.2-0.35, shadows and sweep under 0.11 at their 95th percentile). The
    threshold is ``_FACE_TINT`` of the product threshold, or ``_TINT_OVER_BAND``× the border
    band's 90th percentile of the same mean where the sweep itself is that tinted (its 99th
    is the JPEG's blotches, up to 0.25: the threshold then hid a headband's 0.23); only
    within ``_FACE_RATIO`` of the sweep's brightness. Used on white on white only: as seed
    of the outline's closing (``lifted``, through ``_bridge_faces``) and to give back what
    the cast-shadow cut took (``_keep_white_faces``)."""
    diff = img - bg * ev.ratio[..., None]
    md = cv2.blur(diff, (7, 7))
    mt = np.sqrt(cv2.transform(md * md, _SUM3)) / t_chroma
    floor = float(np.percentile(mt[band_mask], 90)) if band_mask.any() else 0.0
    # Within a tenth of the sweep's brightness: a cast shadow's hue drifts off the sweep's as
    # it darkens (a lamp's shadow 0.7-0.8 of the sweep: tinted blobs that joined the pole).
    thr = max(_FACE_TINT, _TINT_OVER_BAND * floor)
    face = (mt > thr) & (ev.ratio >= _FACE_RATIO)
    # The mean reaches three pixels past a face: one back off it.
    face = cv2.erode(face.astype(np.uint8), _CROSS) > 0
    return _held_tint(face, diff, t_chroma, thr)


def _held_tint(face: np.ndarray, diff: np.ndarray, t_chroma: float | np.ndarray,
               thr: float) -> np.ndarray:
    """``face`` (the 7×7 mean's tinted faces) kept where the tint holds on a 3×3 mean too,
    at ``_FACE_HELD`` of the threshold, opened by a 3×3 disc. Past a face's outline the 7×7
    mean still reads the face for three pixels, eroded by one: a rim of sweep two pixels
    wide along the outline, and where the face met the frame's JPEG blotches, thin wisps of
    it (held-out white on white 1003, a white box, at 640²: over its top corner and at its
    base; kept, the preset placed the box by them and Amazon's product fill read 83.8 %)."""
    if not face.any():
        return face
    m3 = cv2.blur(diff, (3, 3))
    t3 = np.sqrt(cv2.transform(m3 * m3, _SUM3)) / t_chroma
    held = face & (t3 > _FACE_HELD * thr)
    return cv2.morphologyEx(held.astype(np.uint8), cv2.MORPH_OPEN, _CROSS) > 0


_FACE_HELD = 0.6


def _bridge_faces(faces: np.ndarray, seed: np.ndarray, min_area: float) -> np.ndarray:
    """``faces`` with each large piece that comes within ``2 × _FACE_REACH`` pixels of the
    product's evidence (``seed``) joined to it: where a headband's brightness crosses the
    sweep's on its way down to the ear cups its hue fades too, and the band's tinted top
    was cut off from the cups by a gap of 5-12 work pixels. The gap is bridged by what lies
    within ``_FACE_REACH`` of both. Pieces beside the evidence under ``_FACE_SPECK`` of
    ``min_area``, and pieces apart from it under ``min_area``, are dropped: the sweep's JPEG
    blotches (specks along a white bottle's rim, known white on white 9403 at 640²)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(faces.astype(np.uint8),
                                                          connectivity=8)
    big = np.zeros(n, bool)
    big[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    # Pieces touching the evidence join as they are, and with it are what the others are
    # bridged to.
    near = cv2.dilate(seed.astype(np.uint8), _FACE_NEAR) > 0
    touching = np.zeros(n, bool)
    touching[labels[near]] = True
    touching[0] = False
    big &= ~touching
    # Small pieces are the sweep's JPEG blotches (a 7×7 mean of one blotch, eroded: 25
    # pixels), beside the product too (specks along a white bottle's rim).
    touching[1:] &= stats[1:, cv2.CC_STAT_AREA] >= _FACE_SPECK * min_area
    faces = (touching | big)[labels]
    if not big.any():
        return faces
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * _FACE_REACH + 1,) * 2)
    anchor = (near | touching[labels]).astype(np.uint8)
    pieces = big[labels].astype(np.uint8)
    bridge = (cv2.dilate(pieces, disc) > 0) & (cv2.dilate(anchor, disc) > 0)
    return faces | bridge


def _joined_faces(faces: np.ndarray, seed: np.ndarray, min_area: float) -> np.ndarray:
    """``faces`` less the pieces under ``min_area`` that do not join the product's evidence
    (``seed``) itself: a strap's or a headband's face continues the body across its outline,
    a JPEG blotch of the frame a few pixels off the body only comes near it (held-out white
    on white 1003 at 640²: blotches of 90-130 work pixels beside a white box's side and under
    its base, 2-4 pixels away; kept, they widened its box by an eighth). Large pieces are
    ``_bridge_faces``' to judge."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(faces.astype(np.uint8),
                                                          connectivity=8)
    if n <= 1:
        return faces
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    touch = cv2.dilate(seed.astype(np.uint8), _CROSS) > 0
    contact = np.bincount(labels[touch], minlength=n)
    keep |= contact >= _FACE_CONTACT
    keep[0] = False
    return keep[labels]


_FACE_CONTACT = 3

_FACE_NEAR = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
_FACE_SPECK = 0.25


_FACE_REACH = 6


_FACE_TINT = 0.18
_TINT_OVER_BAND = 2.0
_FACE_RATIO = 0.9


def _keep_white_faces(before: np.ndarray, after: np.ndarray, faces: np.ndarray,
                      edges: np.ndarray, ev: Evidence, min_area: float) -> np.ndarray:
    """Give back what the cast-shadow cut took of a white product's faces. A white strap
    hanging under a watch's case has a shadow's colour and lies on the floor, as the cut
    looks for; it is a face all the same when its hue is not the sweep's (``faces``, from
    ``_white_tint``), or when it is flat (the quartiles of its brightness ratio within the
    ratio's noise) and the product's sharp outline (``edges``) runs along
    ``_FACE_OUTLINED`` of its border with the backdrop. A shadow cast on the sweep has a
    soft edge, and its penumbra grades (novel white on white seeds 0-119: straps 0.96-1.0
    outlined, quartiles 0.007 apart; cut shadows 0.0-0.26, 0.03-0.1 apart against a noise
    of 0.03)."""
    cut = ((before > 0) & (after == 0)).astype(np.uint8)
    if not cut.any():
        return after
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cut, connectivity=8)
    keep = np.zeros(n, bool)
    outside = before == 0
    near_edge = cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area < min_area:
            continue
        y0, x0 = max(0, y - 1), max(0, x - 1)
        box = (slice(y0, y + h + 1), slice(x0, x + w + 1))
        comp = labels[box] == i
        ring = (cv2.dilate(comp.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~comp
        ring &= outside[box]
        if not ring.any() or near_edge[box][ring].mean() < _FACE_OUTLINED:
            continue
        r = ev.ratio[box][comp]
        q1, q3 = np.percentile(r, (25, 75))
        keep[i] = q3 - q1 < float(np.median(ev.tol[box][comp]))
    back = keep[labels] & (cut > 0)
    # The tinted faces in what was cut, each piece on its own (a strap's face joined to
    # the shadow beside it in one cut part).
    tinted = (cut > 0) & faces & ~back
    if tinted.any():
        back |= _drop_specks(tinted.astype(np.uint8), min_area) > 0
    if not back.any():
        return after
    return (after | back).astype(np.uint8)


_FACE_OUTLINED = 0.8


def _see_through(labels: np.ndarray, n: int, counts: np.ndarray, bgc: np.ndarray,
                 walled: np.ndarray, walled_f: np.ndarray, ev: Evidence, inside: np.ndarray
                 ) -> np.ndarray:
    """Parts of a white product's closed silhouette that are the backdrop seen through it,
    holding the product's own shadow: under a headband arching over the sweep, between the
    ear cups, the floor is partly plain and partly shaded; its inner side is a tinted face with
    no sharp edge, so the outline walls in half of it (``walled``), the outline and the faces
    more than 0.9 of it (``walled_f``). Yet all of it is the backdrop's colour, the sweep's
    own hue (a white product's faces are off it: ``_white_tint``). Such a part is a hole:
    ``_SEE_PLAIN`` plain, nearly all plain or shadow, its median chroma within
    ``_HOLE_CHROMA`` of the backdrop's outside the product, walled by the outline for at
    least ``_SEE_WALLED`` of its rim and by the outline and the faces for 0.6. A lit patch
    of a white bottle between tinted patches of its body is walled by those alone (outline
    0.0-0.14: taken for holes, known white on white 9050 at 640² 0.97 -> 0.84)."""
    out = np.zeros(n, bool)
    big = np.nonzero((counts >= 50) & (bgc >= _SEE_PLAIN * counts) & (walled_f >= 0.6)
                     & (walled >= _SEE_WALLED))[0]
    big = big[big > 0]
    if not len(big):
        return out
    # Counted for all parts at once; the medians (a frame's worth of pixels for the
    # backdrop's) only where a part passes the rest.
    plainish = np.bincount(labels.ravel(), weights=(ev.bg_like | ev.shadow_like).ravel(),
                           minlength=n)
    big = big[plainish[big] >= 0.9 * counts[big]]
    if not len(big):
        return out
    far = ~inside & ev.bg_like
    if far.sum() < 50:
        return out
    ref = float(np.median(ev.chroma[far]))
    for i in big:
        out[i] = float(np.median(ev.chroma[labels == i])) - ref < _HOLE_CHROMA
    return out


_SEE_PLAIN = 0.7
_SEE_WALLED = 0.3


_WHITE_GROWTH = 2.0
"""A white product's silhouette closed from its outline covers at most this many times the
convex hull of its colour region, or the closing is not trusted (1.18 at most on the tuning
sets at 640/800/1500², 4.2 where a wood table's grain was taken for the outline)."""


def _hull_area(m: np.ndarray) -> int:
    """Pixels in the convex hull of ``m``'s pixels (0 for an empty mask)."""
    pts = _row_ends(m)
    return 0 if pts is None else int(cv2.contourArea(cv2.convexHull(pts))
                                     + cv2.countNonZero(m) ** 0.5)


def _row_ends(m: np.ndarray) -> np.ndarray | None:
    """The first and last set pixel of each row of ``m`` as (n, 1, 2) int32 (x, y) points, or
    None for an empty mask. Every pixel of ``m`` lies on its row's segment between the two, so
    their convex hull is that of all of ``m``'s pixels (``cv2.convexHull`` gives the same
    vertices): two points a row instead of every pixel (~7 -> 0.5 ms on a white product's
    work mask, where the hull's sort of ~50,000 points was the cost)."""
    rows = np.flatnonzero(m.any(1))
    if not len(rows):
        return None
    sub = m[rows] != 0
    pts = np.empty((len(rows), 2, 2), np.int32)
    pts[:, 0, 0] = sub.argmax(1)
    pts[:, 1, 0] = sub.shape[1] - 1 - sub[:, ::-1].argmax(1)
    pts[:, :, 1] = rows[:, None]
    return pts.reshape(-1, 1, 2)


def _around(m: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Slices of ``m``'s bounding box grown by ``margin`` (clipped); None when ``m`` is empty."""
    rows = np.nonzero(m.any(1))[0]
    if not len(rows):
        return None
    cols = np.nonzero(m.any(0))[0]
    return (slice(max(0, rows[0] - margin), rows[-1] + margin + 1),
            slice(max(0, cols[0] - margin), cols[-1] + margin + 1))


def _spread_parts(img: np.ndarray, where: np.ndarray, sigma: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(blurred ``img`` over ``where``, blurred weight): their ratio is the colour of ``where``
    spread into its surroundings. The kernel stops at 2.5 σ (OpenCV's default, 4 σ, costs
    half as much again for weights that are negligible there)."""
    w = where.astype(np.float32)
    k = 2 * round(2.5 * sigma) + 1
    return (cv2.GaussianBlur(_weighted(img, w), (k, k), sigma),
            cv2.GaussianBlur(w, (k, k), sigma))


def _weighted(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``img * w[..., None]`` for an h×w×3 float32 image and an h×w float32 weight: the same
    products, with the weight spread to three channels for OpenCV's multiply (numpy's
    broadcast over a last axis of 3 is slow: 0.53 → 0.31 ms on a 400² work copy)."""
    return cv2.multiply(img, cv2.merge([w, w, w]))


def _spread(img: np.ndarray, where: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(colour of ``img`` over ``where`` spread into its surroundings, weight 0..1 of it)."""
    num, den = _spread_parts(img, where, sigma)
    return num / np.maximum(den, 1e-3)[..., None], den[..., None]


def _near_backdrop(img: np.ndarray, hard: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """The backdrop's actual colour near each pixel, spread inwards from clear backdrop.

    Under the base that is the contact shadow, which the smooth fitted surface leaves out:
    matted against the unshadowed backdrop, a shadowed backdrop pixel next to a darker product
    sits part-way to it and kept half its alpha (a dark line under the base). Far from any
    clear backdrop the fitted surface stands in."""
    num, den = _spread_parts(img, cv2.dilate(hard, np.ones((5, 5), np.uint8)) == 0, 2.5)
    # (``_spread``'s colour and this blend with the weight merged to three channels: the same
    # float32 values as numpy's broadcast over a last axis of 1, about twice as fast.)
    den = cv2.merge([den, den, den])
    w = np.clip(den * 20.0, 0.0, 1.0)
    return w * (num / np.maximum(den, 1e-3)) + (1.0 - w) * bg


def _trim_rim(img: np.ndarray, hard: np.ndarray, near_bg: np.ndarray) -> np.ndarray:
    """Give back rim pixels that are plainly backdrop by colour.

    JPEG's colour ringing next to a saturated product passes the chroma test a few pixels out,
    so the region bulges past the edge, deeper than the edge band, and the bulges printed as
    specks of the old backdrop in composites. On the rim (up to 4 work pixels in), a pixel whose
    colour across the backdrop's is clearly not the product's next to it is backdrop. Only
    where the product's colour differs from the backdrop's: white on white is left alone."""
    deep = cv2.erode(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    rim = (hard > 0) & (deep == 0)
    ys, xs = np.nonzero(rim)
    if not len(ys) or not deep.any():
        return hard
    num, den = _spread_parts(img, deep > 0, 3.0)
    d = den[ys, xs]
    fg = num[ys, xs] / np.maximum(d, 1e-3)[:, None]
    t, trust, resid = _chroma_matte(img[ys, xs], near_bg[ys, xs], fg)
    drop = (trust > 0.5) & (t < 0.25) & (resid < 1.0) & (d > 0.05)
    out = hard.copy()
    out[ys[drop], xs[drop]] = 0
    return out


def downscale(img: np.ndarray, side: int, exact: bool = False) -> np.ndarray:
    """Area-average to about ``side`` on the long side (a photo at most 1.25× that is kept).
    An integer factor takes OpenCV's fast path (several times quicker than a fractional one).

    ``exact``: to ``side`` itself, not the nearest integer factor. Every decision on the work
    copy is made in its pixels (kernels, strips, minimum areas, the horizon's window), so only
    an exact size gives the same decisions for the same photo at 800² and at 1500² (an integer
    factor gives 400 px at 800² and 375 at 1500² against 320 at 640²: a wood table's grain then
    out-stepped the horizon, IoU 0.99 at 640² and 0.25 at 1500²). An exact integer factor still
    takes the fast path."""
    h, w = img.shape[:2]
    k = _work_factor(h, w, side, exact)
    if k == 1:
        return img
    if isinstance(k, int):
        return cv2.resize(img, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)
    # The integer part first on OpenCV's fast path (a fractional area resize of a 1500² photo
    # takes 2.7× as long), then the rest on the small copy.
    size = (max(1, round(w / k)), max(1, round(h / k)))
    ki = int(k)
    if ki >= 2:
        img = cv2.resize(img, (max(size[0], w // ki), max(size[1], h // ki)),
                         interpolation=cv2.INTER_AREA)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _work_factor(h: int, w: int, side: int, exact: bool = False) -> int | float:
    """How many photo pixels one work pixel spans: 1 (kept) for a photo at most 1.25× ``side``;
    else the nearest int, or with ``exact`` an int only where the long side is an exact
    multiple of ``side`` and a float otherwise."""
    if not exact:
        k = max(h, w) / side
        return 1 if k <= 1.25 else round(k)
    # A strip of a photo (48 px by 1600) keeps at least 12 work pixels across: the border band
    # and the edge band are a few pixels each.
    k = min(max(h, w) / side, min(h, w) / 12)
    if k <= 1.25:
        return 1
    return round(k) if abs(k - round(k)) < 1e-9 else k


@dataclass(frozen=True)
class Found:
    small: np.ndarray
    """The work copy (uint8 RGB)."""
    hard: np.ndarray
    """0/1 uint8 product mask at the work size."""
    coef: np.ndarray
    """Backdrop surface coefficients (see ``backdrop_at``)."""
    fg: np.ndarray
    """float32 product colour near each pixel, at the work size."""
    scale: float = 1
    """Factor from the work copy to the full image (an int where it is an exact integer)."""
    bg: np.ndarray | None = None
    """float32 backdrop colour near each pixel at the work size: the clear backdrop nearby
    (shadows included), else the fitted surface."""
    confidence: float = 1.0
    """0..1: how sure the segmenter is of this cutout, from the work copy's signals only
    (``_confidence_from``); ``cutout()`` reports it with the edge matte's signal added
    (``refine(found, rgb, signals)``)."""
    why: tuple[str, ...] = ()
    """What lowered the confidence, in words."""
    signals: dict | None = None
    """The numbers the confidence was weighed from (``_confidence_signals``)."""


def _box_mean(x: np.ndarray, r: int) -> np.ndarray:
    return cv2.boxFilter(x, -1, (2 * r + 1, 2 * r + 1), borderType=cv2.BORDER_REFLECT)


def guided_filter(p: np.ndarray, guide: np.ndarray, r: int = 3, eps: float = 2e-4) -> np.ndarray:
    """He et al.'s guided filter (grey guide): ``p`` smoothed, edges taken from ``guide``."""
    mean_i, mean_p = _box_mean(guide, r), _box_mean(p, r)
    cov_ip = _box_mean(guide * p, r) - mean_i * mean_p
    var_i = _box_mean(guide * guide, r) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return np.clip(_box_mean(a, r) * guide + _box_mean(b, r), 0.0, 1.0)


class ClassicalSegmenter:
    """Backdrop-model segmenter for product photos on a backdrop. See the module docstring."""

    name = "classical"

    def __init__(self, params: ClassicalParams | None = None) -> None:
        self.params = params or ClassicalParams()

    def mask(self, image: Image.Image) -> np.ndarray:
        if image.mode in ("RGBA", "LA", "PA"):
            alpha = np.asarray(image.getchannel("A"), np.float32) / 255.0
            if alpha.min() < 0.98:
                return alpha
            image = image.convert("RGB")
        rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        return self.mask_array(rgb)

    def mask_array(self, rgb: np.ndarray) -> np.ndarray:
        """``mask`` of an RGB uint8 array."""
        return self.alpha_u8(rgb).astype(np.float32) * (1 / 255.0)

    def alpha_u8(self, rgb: np.ndarray) -> np.ndarray:
        """The alpha as uint8 0..255 (what an RGBA image stores; saves a float copy)."""
        return self.refine(self.find(rgb), rgb)

    def regions(self, rgb: np.ndarray) -> np.ndarray:
        """0/1 uint8 product mask on the work copy only (no edge refinement, no confidence):
        enough for a bounding box (``presets.check``'s fill)."""
        return self._work_regions(rgb)[6]

    def _work_regions(self, rgb: np.ndarray):
        p = self.params
        small = downscale(rgb, p.exact_work_side or p.work_side, p.exact_work_side is not None)
        img = small.astype(np.float32)
        band = max(2, round(p.border * min(img.shape[:2])))
        bg, sigma, coef = _fit_backdrop(img, band)
        band_mask = _border_sel(*img.shape[:2], band)
        # Two planes: a table top meeting a wall behind the product. One smooth surface cannot
        # follow the step at the horizon, so the wall and the table are fitted apart and used
        # when they explain clearly more of the border than the single surface.
        hband = planes = None
        best = alt = None
        # The single surface's share of the border at the tightest tolerance any candidate
        # is judged with (6 levels) bounds what a candidate can gain: where it already
        # explains more than 95 % (90 %; 98 % for a clear step) of it, no candidate on two
        # strips (one) can win, and none is fitted (a plain sweep: most photos).
        one_res = _max3(np.abs(img - bg))[band_mask]
        one_min = float((one_res < 6.0).mean())
        for hz in _find_horizon(img, band):
            # The margin two planes must win by: less for a clear step on both sides (a
            # stone table 50 levels under a plain wall: a textured table's noise lets one
            # surface explain the border nearly as well, yet it cannot follow the step, and
            # the table's blotches along the horizon were kept as product).
            margin = 0.1 if hz.one_side else (0.02 if hz.strength >= 42.0 else 0.05)
            if one_min + margin > 1.0:
                continue
            two = _fit_two_planes(img, band, hz)
            if two is None:
                continue
            # Each border pixel is judged at its own plane's noise, both models alike: one
            # figure for all made a textured table's border (grain 8-10 levels against a
            # wall's 1) mostly "unexplained" by either model, so the wall alone told them
            # apart, and the gain fell with the photo's noise (textured 8005, a box on
            # white-washed wood: 0.053 at 640², 0.040 at 800², 0.023 at 1500², under the
            # 0.05 margin at the larger sizes, where the table was kept as product).
            tol = np.minimum(two.border_noise(img, band), sigma)
            one_in = _inlier_share(one_res, tol)
            two_res = two.border_residual(img, band)
            two_in = _inlier_share(two_res, tol)
            gain = two_in - one_in - margin
            if gain >= 0 and (best is None or gain > best[0]):
                best = (gain, two)
            elif best is None and two.s_table >= _GRAIN_RATIO * max(two.s_wall, sigma):
                alt_gain = _grain_gain(one_res, two_res, two.border_noise(img, band)) - margin
                if alt_gain >= 0 and (alt is None or alt_gain > alt[0]):
                    alt = (alt_gain, two)
        if best is None:
            best = alt
        if best is not None:
            sigma = best[1].sigma
            bg, hband, planes = best[1].full(*img.shape[:2])
        else:
            bg = _sweep_profile(img, bg, band, sigma, p.bright_sigmas)
        ev = _evidence(img, bg, sigma, band_mask, p, hband, planes,
                       max(rgb.shape[:2]) / max(small.shape[:2]))
        # White on white is decided, and closed from its outline, without the faint-tint
        # evidence (a white bottle's faces are faintly tinted all over: as seed they broke
        # the closing, 0.95 -> 0.87); elsewhere the tint is product (a dim sole's warm grey).
        plain_ev = ev if ev.tint is None or not ev.tint.any() else replace(
            ev, product=ev.product & ~ev.tint, tint=None)
        hard = _regions(plain_ev.product, ev.bg_like, ev.shadow_like, p, img, bg, plain_ev)
        white = bool(hard.any()) and _whiteish(hard, plain_ev) and _mostly_outline(hard, plain_ev)
        if white:
            # Not what hangs under the product's body by thin parts (the floor between a
            # stool's legs, ``_hung_bodies``): read on the rest, a coloured seat is no white
            # on white.
            hung = _hung_bodies(hard, plain_ev)
            if hung is not None:
                rest = hard & ~hung
                white = _whiteish(rest, plain_ev) and _mostly_outline(rest, plain_ev)
        full = None
        if white and plain_ev is not ev:
            # Decided without the tint, a product whose colour only the faint tint tells
            # (a brown box on a brown wood table, 0.62 of its brightness) kept its rim alone,
            # and that rim is whiteish: the box was then closed from its outline as white on
            # white, and lost whole (textured 7010: IoU 0.000). White on white is whiteish
            # with its tint too (a white bottle's tinted faces: ratio 0.81-0.95).
            full = _regions(ev.product, ev.bg_like, ev.shadow_like, p, img, bg, ev)
            white = not full.any() or _whiteish(full, ev)
        if white:
            edges = _silhouette_edges(img, band_mask, hband)
            lum_d = cv2.transform(img - bg, _MEAN3)
            thr = max(2.0, 0.8 * sigma)
            lifted = cv2.blur(lum_d, (5, 5)) > thr
            # The 5×5 mean shrinks the face by two pixels: grow it back over what is still
            # lifted on a 3×3 mean.
            lifted = (cv2.dilate(lifted.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0) & (
                cv2.blur(lum_d, (3, 3)) > 0.5 * thr)
            neutral = _neutral_sweep(bg, band_mask)
            if neutral:
                faces = _white_tint(img, bg, plain_ev, band_mask,
                                    np.maximum(p.min_chroma, p.chroma_sigmas * sigma))
                body, min_area = plain_ev.product & (hard > 0), p.min_region * hard.size
                lifted |= _bridge_faces(_joined_faces(faces, body, min_area), body, min_area)
            # The outline and whatever else is product evidence (not the region's hull
            # fill, which takes in the shadow next to a white product).
            seed = plain_ev.product.astype(np.uint8) & hard
            closed = _drop_specks(_close_silhouette(seed, edges, plain_ev, lifted=lifted,
                                                    see_through=neutral),
                                  p.min_region * hard.size)
            if closed.sum() > _WHITE_GROWTH * _hull_area(hard):
                # Closed from its outline, a white product stays inside the hull of what its
                # colour found (at most 1.12× its area on the tuning sets). Far past it, the
                # "outline" was a textured table's grain: a brown mug on brown wood whose
                # brightness ratio came out at 0.80 (> 0.7: "whiteish") was closed into 82 %
                # of the frame (textured 9419 at 1500²: IoU 0.17). Its colour result stands.
                white = False
            else:
                # What the outline left out above a face that goes on up with its shading (a
                # white bottle's lit neck and shoulder, as bright as the sweep give or take a
                # level). After the growth check: that reads the outline's closing alone (a
                # white watch's strap given back here took it past 2x the case it was found by).
                hard = _shading_goes_up(closed, plain_ev, sigma)
                ev = replace(plain_ev, lifted=lifted,
                             grown=(hard > closed) if hard is not closed else None)
        if not white and plain_ev is not ev:
            hard = full if full is not None else _regions(
                ev.product, ev.bg_like, ev.shadow_like, p, img, bg, ev)
        hard = _peel_base_shadow(hard, ev, p)
        hard = _peel_shadow_under_dark(hard, ev, p)
        before = hard
        hard = _drop_cast_shadow(hard, ev)
        cast = (before > 0) & (hard == 0) if hard is not before else None
        if white and neutral and hard is not before:
            hard = _keep_white_faces(before, hard, faces, edges, ev, p.min_region * hard.size)
        if white and ev.grown is not None and hard is not before:
            # What the product's shading gave back is no shadow on the floor: the walk up
            # followed the product's own brightness from a deep part of it (a white strap's
            # lower half, walked up from its foot, looks like the case's cast shadow).
            hard = hard | (ev.grown & (before > 0)).astype(np.uint8)
        if white:
            # The upper half of a soft shadow line on the floor, kept under the product (the
            # contact shadow between a pair of headphones' ear cups).
            hard = _drop_floor_line(hard, ev)
        enclosed = hard
        if not white:
            # (White on white: its shaded faces have the backdrop's chroma, darker, walled in
            # by its outline: what this cuts.)
            hard = _drop_enclosed_shadow(hard, ev)
        # A light part under the product that reads as its shadow (a white sole on a white
        # table): closed off, with the mask above it and a step down into shadow under it.
        # Not what was just cut as the shadow walled in by thin parts: closed off, under
        # the foot ring, over the stool's darker contact shadow, it looks like a sole.
        before = hard
        hard = _restore_lit_parts(hard, ev)
        if before is not enclosed:
            cut = enclosed > before
            if hard is not before:
                hard = hard & ~cut.astype(np.uint8)
            ev = replace(ev, enclosed=cut)
        if hard is not before and (hard > before).any():
            ev = replace(ev, restored=hard > before)
        # A part between the product above and below it that opens sideways through a gap in
        # its outline (a label's shaded side beside the cast shadow): judged as a hole. Given
        # back on its own evidence, as the sole is, so the confidence does not doubt it again.
        before = hard
        hard = _fill_sandwiched(hard, ev, img)
        if hard is not before:
            added = hard > before
            ev = replace(ev, restored=added if ev.restored is None else ev.restored | added)
        if not white:
            # The floor framed by thin parts (a stool's legs and ring): a body of the mask
            # that hangs by thin parts only, lies on the floor and looks like the backdrop.
            hard = _drop_framed_backdrop(hard, ev)
            if ev.enclosed is not None:
                # The band of floor left round the gaps cut from between thin parts.
                hard = _trim_gap_rims(hard, ev.enclosed, ev)
        # A smooth part of the product on a textured table (a label, a sole of the table's
        # colour): no colour evidence, but smooth where the grain is not.
        hard = _smooth_parts(img, hard, band, p.min_region * hard.size, cast)
        if not white:
            # The backdrop in bays between leaves, kept by JPEG's colour and the closing.
            faces = np.zeros(hard.shape, bool)
            hard = _open_pockets(img, hard, bg, ev, faces)
            if faces.any():
                # Left as product on its own evidence, as a restored sole is: the
                # confidence does not count it as backdrop kept.
                ev = replace(ev, restored=faces if ev.restored is None else ev.restored | faces)
            # The backdrop under a bridge, lit at the top and shadowed below (sunglasses).
            hard = _open_shaded_holes(hard, ev)
        # What follows only matters near the product: work on its bounding box (plus more than
        # the blurs reach), a quarter of the frame or less for a typical product shot.
        near_bg = bg.copy()
        box = _around(hard, 12)
        if box is not None:
            near_bg[box] = _near_backdrop(img[box], hard[box], bg[box])
            hard = hard.copy()
            hard[box] = _trim_rim(img[box], hard[box], near_bg[box])
        return small, img, bg, sigma, coef, ev, hard, band, near_bg

    def find(self, rgb: np.ndarray) -> Found:
        """The product's regions on a small copy, and what the edge refinement needs."""
        small, img, bg, sigma, coef, ev, hard, band, near_bg = self._work_regions(rgb)
        # The product's own colour near each edge: solid product pixels, spread outwards.
        solid = cv2.erode(hard, np.ones((3, 3), np.uint8)).astype(np.float32)
        num = cv2.GaussianBlur(_weighted(img, solid), (0, 0), 1.2)
        # (The weight merged to three channels: the same float32 values as numpy's broadcast
        # over a last axis of 1, about twice as fast.)
        den = cv2.GaussianBlur(solid, (0, 0), 1.2)
        den = cv2.merge([den, den, den])
        fg = np.where(den > 1e-3, num / np.maximum(den, 1e-3), img)
        p = self.params
        k = _work_factor(*rgb.shape[:2], p.exact_work_side or p.work_side,
                         p.exact_work_side is not None)
        if not isinstance(k, int):
            k = rgb.shape[1] / small.shape[1]
        signals = _confidence_signals(img, bg, sigma, band, hard, ev)
        conf, why = _confidence_from(signals)
        return Found(small, hard, coef, fg, k, near_bg, conf, why, signals)

    def hard_mask(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(work copy, 0/1 uint8 mask at the work size)."""
        f = self.find(rgb)
        return f.small, f.hard

    def refine(self, found: Found, rgb: np.ndarray, signals: dict | None = None) -> np.ndarray:
        """Full-size uint8 alpha: 255 inside the region, 0 outside, and a matte on the edge band
        only (a few work pixels wide), which is all that differs at full resolution. A
        ``signals`` dict gets what the matte did that the confidence weighs
        (``_matte_signals``)."""
        p = self.params
        h, w = rgb.shape[:2]
        k = found.scale
        hard = found.hard
        sh, sw = hard.shape
        # The work mask's edge may sit a pixel or two off: the band spans two work pixels
        # either side of it, and only what is deeper inside is taken as solid product.
        inner = cv2.erode(hard, np.ones((5, 5), np.uint8))
        support = cv2.dilate(hard, np.ones((3, 3), np.uint8))
        band_small = (support > 0) & (inner == 0)
        if isinstance(k, int):
            bh, bw = min(h, sh * k), min(w, sw * k)
            solid = cv2.resize(inner * np.uint8(255), (sw * k, sh * k),
                               interpolation=cv2.INTER_NEAREST)
            if (bh, bw) == solid.shape == (h, w):
                alpha = solid  # the work copy tiles the photo exactly (2000² = 400² × 5)
            else:
                alpha = np.zeros((h, w), np.uint8)
                alpha[:bh, :bw] = solid[:bh, :bw]
            if bh < h:  # the few rows/columns an integer downscale left out
                alpha[bh:, :] = alpha[bh - 1:bh, :]
            if bw < w:
                alpha[:, bw:] = alpha[:, bw - 1:bw]
            ys_s, xs_s = np.nonzero(band_small)
            if not len(ys_s):
                return alpha
            # Every full-size pixel of each band block.
            oy, ox = np.divmod(np.arange(k * k), k)
            ys = (ys_s[:, None] * k + oy[None, :]).ravel()
            xs = (xs_s[:, None] * k + ox[None, :]).ravel()
            ok = (ys < h) & (xs < w)
            ys, xs = ys[ok], xs[ok]
            iy, ix = np.minimum(ys // k, sh - 1), np.minimum(xs // k, sw - 1)
            ky = kx = float(k)
        else:
            # A fractional factor: each full-size pixel takes the work pixel its centre falls
            # in (the same map for the solid inside and the band, so they tile the frame).
            ky, kx = h / sh, w / sw
            alpha = cv2.resize(inner * np.uint8(255), (w, h),
                               interpolation=cv2.INTER_NEAREST_EXACT)
            row = _nearest_map(sh, h)
            col = _nearest_map(sw, w)
            if not band_small.any():
                return alpha
            by, bx = np.nonzero(band_small.any(1))[0], np.nonzero(band_small.any(0))[0]
            r0, r1 = np.searchsorted(row, by[0]), np.searchsorted(row, by[-1], "right")
            c0, c1 = np.searchsorted(col, bx[0]), np.searchsorted(col, bx[-1], "right")
            sub = band_small[row[r0:r1, None], col[None, c0:c1]]
            ys, xs = np.nonzero(sub)
            ys, xs = ys + r0, xs + c0
            iy, ix = row[ys], col[xs]
        # The guided filter on a medium copy is the fallback where the matte is unsure.
        gray = cv2.cvtColor(found.small, cv2.COLOR_RGB2GRAY).astype(np.float32)
        gray *= 1 / 255.0
        soft = cv2.GaussianBlur(cv2.erode(hard, _CROSS).astype(np.float32), (0, 0), 0.8)
        q_mid = guided_filter(soft, gray, r=2, eps=p.eps)
        # Smooth maps are sampled bilinearly: nearest sampling would print k×k blocks on
        # the edge wherever the matte falls back to them.
        fy, fx = (ys + 0.5) / ky - 0.5, (xs + 0.5) / kx - 0.5
        old = _bilinear(q_mid, fy, fx)
        # (By flat index: numpy's 2-D fancy indexing of an h×w×3 array is 4-5× slower than a
        # take along the first axis of its (h·w)×3 view; the same values.)
        at, at_small = ys * w + xs, iy * sw + ix
        pix = _take(rgb, at).astype(np.float32)
        bg_pix, fg_pix = _take(found.bg, at_small), _take(found.fg, at_small)
        thin = _thin_parts(hard, found.small, found.bg)
        ceil = None
        if thin is not None:
            # Thin parts kept whole in what caps a shadow-coloured pixel (``_thin_parts``),
            # where the product beside it is shadow-coloured itself (grey metal): next to a
            # coloured part (a mug's handle) such a pixel is its shadow.
            soft_t = cv2.GaussianBlur((cv2.erode(hard, _CROSS) | thin).astype(np.float32),
                                      (0, 0), 0.8)
            lifted = np.maximum(old, _bilinear(guided_filter(soft_t, gray, r=2, eps=p.eps),
                                               fy, fx))
            grey = _shadow_grey(fg_pix, bg_pix)
            # Grey metal on a wood table is off the table's hue by 10-20 levels: a thin line
            # of it is no shadow (``_off_hue_lines``), and the matte, unsure across so small
            # a difference, falls back to the lifted value, not the eroded mask's.
            off_grey = _shadow_grey(fg_pix, bg_pix, _GREY_OFF_THIN) & ~grey
            ceil = np.where(grey | off_grey, lifted, old)
            if off_grey.any():
                old = np.where(off_grey, lifted, old)
        a = _matte(pix, bg_pix, fg_pix, old, p.shadow_floor if p.dark_is_product else 0.0, ceil)
        # Faint alpha away from the found region is filter noise and JPEG ringing; it would
        # print as specks of product colour on a new backdrop. Keep alpha only within about
        # one work pixel of the region, and drop the faintest levels.
        a = (a - 0.06) * (1 / 0.9) * _bilinear(support.astype(np.float32), fy, fx)
        a[a < 0.03] = 0.0
        alpha = np.ascontiguousarray(alpha)  # (already: the flat write must land in it)
        alpha.reshape(-1)[at] = np.clip(a * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)
        if signals is not None:
            signals.update(_matte_signals(pix, bg_pix, a, p.shadow_floor))
            signals["soft_rim"] = _soft_rim(hard, a, kx)
        return alpha


def _take(img: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``img[ys, xs]`` of an h×w(×c) array at the flat indices ``at`` = ys·w + xs."""
    if img.ndim == 2:
        return img.reshape(-1).take(at)
    return img.reshape(-1, img.shape[2]).take(at, 0)


def _shadow_grey(f: np.ndarray, b: np.ndarray, off_max: float = 10.0) -> np.ndarray:
    """bool per row: the colour ``f`` has the backdrop ``b``'s chroma (within ``off_max``
    levels) and is darker than it: what ``_matte`` takes for a possible shadow at 10 levels
    (N×3 float32 each)."""
    bb = _dot(b, b)
    kb = _dot(f, b) / np.maximum(bb, 1.0)
    off = np.sqrt(np.maximum(_dot(f, f) - kb * kb * bb, 0))
    return (off < off_max) & (kb < 1.0)


def _thin_parts(hard: np.ndarray, small: np.ndarray, bg: np.ndarray) -> np.ndarray | None:
    """0/1 uint8: the work mask's thin dark lines (what an opening by a 7×7 disc removes, in
    pieces of ``_THIN_PIECE`` px or more, that is darker than the backdrop beside it: the
    ratio's black-hat over an 11 px disc over ``_FRAMED_LINE``), or None.

    The edge matte may only lower a pixel with the backdrop's chroma that is darker than it
    (a shadow, or grey metal on a grey floor) to the guided filter's soft value, which is
    blurred from the mask less its rim (a 3×3 cross's erosion). A stool's legs are 4-5 work
    px across at 640², its foot ring ~3: eroded and blurred they read under 0.5 at their
    edges, and half the ring and the legs' edges were given back (alpha 0.3-0.48: novel
    stools on grey, 3-7 % of the stool lost). That ceiling keeps such lines whole; not the
    thin strips of floor in shadow left along them (not darker than what is beside them)."""
    opened = cv2.morphologyEx(hard, cv2.MORPH_OPEN, _DISC7)
    thin = (hard > 0) & (opened == 0)
    area = cv2.countNonZero(hard)
    if cv2.countNonZero(thin.view(np.uint8)) < _THIN_SHARE * area:
        return None  # (most products: a solid body)
    box = _around(thin.view(np.uint8), 8)
    if box is None:
        return None
    lum = cv2.transform(small[box].astype(np.float32), _MEAN3) + 1.0
    r = lum / (cv2.transform(bg[box], _MEAN3) + 1.0)
    dark = cv2.morphologyEx(r, cv2.MORPH_BLACKHAT, _DISC11) > _FRAMED_LINE
    dark = cv2.dilate(dark.view(np.uint8), np.ones((3, 3), np.uint8)) > 0
    tb = thin[box] & dark
    n, lab, st, _ = cv2.connectedComponentsWithStats(tb.view(np.uint8), connectivity=8)
    big = st[:, cv2.CC_STAT_AREA] >= _THIN_PIECE
    big[0] = False
    # ...where they are a good share of the product (a stool's legs and ring: 30-45 % of
    # it): a piece or two of a solid product's shadow kept beside it is not (the ring of a
    # mug handle's hard shadow, under 1 %, tuning cast shadows 24 at 640²).
    if st[big, cv2.CC_STAT_AREA].sum() < _THIN_SHARE * area:
        return None
    out = np.zeros_like(hard)
    # ...and the mask right next to them (where a leg crosses the ring, or meets the seat).
    out[box] = cv2.dilate(big[lab].view(np.uint8), np.ones((3, 3), np.uint8)) & hard[box]
    return out


_THIN_PIECE = 24
_GREY_OFF_THIN = 20.0
"""A thin part's colour 10-20 levels off the backdrop's hue (grey metal on wood, 10-13) is
held at the lifted value by the edge matte, as a shadow-grey one is (``refine``)."""
_THIN_SHARE = 0.1


def _nearest_map(n_small: int, n_full: int) -> np.ndarray:
    """For each of ``n_full`` pixels, the one of ``n_small`` that OpenCV's INTER_NEAREST_EXACT
    resize takes it from (the same map for the band as for the solid inside)."""
    ramp = np.arange(n_small, dtype=np.float32)[None, :]
    return cv2.resize(ramp, (n_full, 1), interpolation=cv2.INTER_NEAREST_EXACT)[0].astype(
        np.int32)


def _matte_signals(pix: np.ndarray, bg: np.ndarray, a: np.ndarray, floor: float
                   ) -> dict[str, float]:
    """What the edge matte gave back that no backdrop explains: of the edge band's pixels it
    kept (alpha ≥ 0.5), the share of pixels it gave back (< 0.5) that are darker than any
    shadow (under ``floor`` of the backdrop next to them). A tinted glass bottle's dark walls,
    seen edge-on along its outline, are such pixels: the matte, which measures alpha across
    the backdrop's colour, takes black for a deep shadow and gives the walls back (IoU
    0.93-0.95 at confidence 1.00 before this signal)."""
    if not len(a):
        return {"matte_dark": 0.0}
    ratio = (_sum3(pix) + 3.0) / (_sum3(bg) + 3.0)
    back = a < 0.5
    kept = max(int((~back).sum()), 1)
    return {"matte_dark": float((back & (ratio < floor)).sum() / kept)}


def _soft_rim(hard: np.ndarray, a: np.ndarray, k: float) -> float:
    """How wide, on average, the edge matte left the outline part-transparent, in work
    pixels: the area of the edge band with alpha between 0.15 and 0.85 over the length of the
    work mask's outline (``k``: full-size pixels per work pixel). A sharp outline is under
    1.4 (at 640² and 800²; 1.0 at 1500², where a photo's edge blur is fewer work pixels); a
    light grey frame round dark lenses, which the matte measures against the lens beside it
    and leaves a part blend, is its whole width (sunglasses on white at 640²: 1.75-2.0)."""
    if not len(a):
        return 0.0
    contours, _ = cv2.findContours(hard, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    outline = sum(cv2.arcLength(c, True) for c in contours)
    return float(np.count_nonzero((a > 0.15) & (a < 0.85)) / (k * k) / max(outline, 1.0))

def _bilinear(img: np.ndarray, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
    """``img`` (2-D float32) at fractional pixel coordinates, clamped at the borders: one
    ``cv2.remap`` pass over the points laid out as rows of 1024 (remap wants < 32767 rows)."""
    n = len(fy)
    cols = 1024
    rows = -(-n // cols)
    my = np.zeros(rows * cols, np.float32)
    mx = np.zeros(rows * cols, np.float32)
    my[:n], mx[:n] = fy, fx
    out = cv2.remap(img, mx.reshape(rows, cols), my.reshape(rows, cols), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1)[:n]


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of N×3 arrays: the products in one pass, then ``_sum3``."""
    return _sum3(a * b)


def _sum3(x: np.ndarray) -> np.ndarray:
    """Row sums of an N×3 array, spelt out: numpy's ``sum(axis=1)`` over 3 is ~6× slower.
    (x0 + x1) + x2 is the order numpy's reduce adds them in: the same float32 bits."""
    return x[:, 0] + x[:, 1] + x[:, 2]


def _chroma_matte(pix: np.ndarray, b: np.ndarray, f: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matting on the part of colour across the backdrop's colour B (N×3 float32 each).

    A shadow scales B, so it moves a pixel only along B: a pixel α·F + (1-α)·s·B, with the
    component along B removed, is α times F's, whatever the shadow s. Returns (α, trust,
    residual): trust is 0..1 by how far F's colour lies across B (a white product on a white
    sweep has none, a red mug on blue paper plenty); the residual is the pixel's distance off
    the segment, in units of half its length."""
    inv_bb = 1.0 / np.maximum(_dot(b, b), 1.0)
    fb = f - b
    pb = pix - b
    fb_x = fb - (_dot(fb, b) * inv_bb)[:, None] * b
    n2_x = _dot(fb_x, fb_x)
    # fb_x is across B, so pb's part along B drops out of the dot product by itself, and the
    # length of pb across B follows from Pythagoras: no second projected array is needed.
    t_x = np.clip(_dot(pb, fb_x) / np.maximum(n2_x, 1.0), 0, 1)
    pb_b = _dot(pb, b)
    pb2_x = _dot(pb, pb) - pb_b * pb_b * inv_bb
    trust = np.clip((np.sqrt(n2_x) - 16.0) / 24.0, 0, 1)
    resid = np.sqrt(np.maximum(pb2_x - t_x * t_x * n2_x, 0)) / np.sqrt(
        np.maximum(n2_x, 1.0)) * 2
    return t_x, trust, resid


def _matte(pix: np.ndarray, b: np.ndarray, f: np.ndarray, old: np.ndarray,
           floor: float = 0.42, ceil: np.ndarray | None = None) -> np.ndarray:
    """Known-backdrop matting: a pixel is α·F + (1-α)·B with B the fitted backdrop and F the
    product colour next to it, so α is where the pixel sits on the segment B→F. Trusted where F
    and B differ clearly; elsewhere the guided filter's value (``old``) stays. ``floor``: the
    darkest a shadow makes the backdrop (``ClassicalParams.shadow_floor``). ``ceil``: the most
    a shadow-coloured pixel may keep, where not ``old`` (thin dark lines, ``_thin_parts``)."""
    b = b.astype(np.float32)
    fb = f - b
    pb = pix - b
    n2 = _dot(fb, fb)
    t = _dot(pb, fb) / np.maximum(n2, 1.0)
    resid = np.sqrt(np.maximum(_dot(pb, pb) - t * t * n2, 0))
    dist = np.sqrt(n2)
    conf = np.clip((dist - 12.0) / 24.0, 0, 1) * np.clip(1.5 - resid / np.maximum(dist, 1) * 2, 0, 1)
    alpha = np.clip(t, 0, 1)
    t_x, w_x, resid_x = _chroma_matte(pix, b, f)
    bb = _dot(b, b)
    inv_bb = 1.0 / np.maximum(bb, 1.0)
    kb = _dot(pix, b) * inv_bb
    # Darker than any shadow makes the backdrop next to it, a pixel is no shadow, and the
    # matte across B's colour (which takes black for a deep shadow: black has no colour across
    # B) does not apply; the plain matte along B→F holds. A tinted glass bottle's dark walls,
    # seen edge-on along its outline, were given back (IoU 0.92-0.94 at every size).
    w_x = np.where(kb < floor, 0.0, w_x)
    alpha = w_x * t_x + (1 - w_x) * alpha
    # A pixel with the backdrop's chroma that is only darker may be shadow, which the backdrop
    # model does not include: the matte may lower its alpha but not raise it. Not when it is
    # darker than ``shadow_floor`` of the backdrop next to it (which is shadowed already, if
    # there is a shadow): that is a dark product, whose edge pixels were held at the guided
    # filter's soft value (half-transparent black product over a cast shadow).
    off_chroma = np.sqrt(np.maximum(_dot(pix, pix) - kb * kb * bb, 0))
    shadowish = (off_chroma < 10.0) & (kb < 1.0) & (kb > 0.42)
    alpha = np.where(shadowish, np.minimum(alpha, old if ceil is None else ceil), alpha)
    # The work mask is trusted to within half an alpha, unless the colour across B is clear:
    # then the matte decides (the work mask bulges a few pixels past a saturated product's edge
    # where JPEG smears its colour, and those bulges printed as specks of the old backdrop).
    alpha = np.where(w_x > 0.5, alpha, np.clip(alpha, old - 0.5, old + 0.5))
    conf = np.maximum(conf, w_x * np.clip(1.5 - resid_x, 0, 1))
    alpha = conf * alpha + (1 - conf) * old
    # However alike F and B are (where the matte falls back to the guided filter), a pixel
    # kb of B's brightness holds at least 1 - kb of product (all of it black at worst):
    # darker than any shadow, it is more product than backdrop.
    return np.where(kb < floor, np.maximum(alpha, 1.0 - kb), alpha)


# -- ONNX models (rembg's files) -------------------------------------------------------------

@dataclass(frozen=True)
class OnnxModelKind:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output: str
    """'minmax' (u2net family: normalise the output to 0..1) or 'sigmoid' (birefnet)."""


ONNX_KINDS: dict[str, OnnxModelKind] = {
    # As rembg's sessions pre/post-process each model family.
    "u2net": OnnxModelKind(320, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "minmax"),
    "u2netp": OnnxModelKind(320, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "minmax"),
    "silueta": OnnxModelKind(320, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "minmax"),
    "isnet-general-use": OnnxModelKind(1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0), "minmax"),
    "birefnet-general": OnnxModelKind(1024, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "sigmoid"),
    "birefnet-general-lite": OnnxModelKind(1024, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                           "sigmoid"),
}


class OnnxSegmenter:
    """A rembg model file run with onnxruntime. ``kind`` picks its pre/post-processing."""

    def __init__(self, model_path: str | Path, kind: str = "u2net",
                 providers: list[str] | None = None) -> None:
        if kind not in ONNX_KINDS:
            raise ValueError(f"unknown ONNX model kind {kind!r}; known: {', '.join(ONNX_KINDS)}")
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file {str(path)!r} does not exist (models are "
                                    "read from a local folder, never downloaded)")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), opts,
                                            providers=providers or ["CPUExecutionProvider"])
        self.kind = ONNX_KINDS[kind]
        self.name = f"onnx:{kind}"
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, image: Image.Image) -> np.ndarray:
        k = self.kind
        rgb = np.asarray(image.convert("RGB").resize((k.size, k.size), Image.Resampling.LANCZOS),
                         np.float32)
        rgb = rgb / max(float(rgb.max()), 1e-6)
        x = (rgb - np.array(k.mean, np.float32)) / np.array(k.std, np.float32)
        return x.transpose(2, 0, 1)[None].astype(np.float32)

    def postprocess(self, out: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        pred = np.asarray(out, np.float32).reshape(out.shape[-2], out.shape[-1])
        if self.kind.output == "sigmoid":
            pred = 1.0 / (1.0 + np.exp(-pred))
        else:
            lo, hi = float(pred.min()), float(pred.max())
            pred = (pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred)
        return cv2.resize(pred, size, interpolation=cv2.INTER_LINEAR).clip(0, 1).astype(np.float32)

    def mask(self, image: Image.Image) -> np.ndarray:
        if image.mode == "RGBA":
            alpha = np.asarray(image.getchannel("A"), np.float32) / 255.0
            if alpha.min() < 0.98:
                return alpha
        out = self.session.run(None, {self.input_name: self.preprocess(image)})[0]
        return self.postprocess(out, image.size)


AUTO_ORDER: tuple[str, ...] = ("isnet-general-use", "birefnet-general-lite", "u2net",
                               "birefnet-general", "silueta", "u2netp")
"""Which installed model ``auto`` picks first: the best cutouts for their CPU cost
(docs/OPS.md has the timings)."""


class AutoSegmenter:
    """``segmenter = "auto"``: the first rembg model of ``AUTO_ORDER`` found in the model
    folder, else the classical segmenter; and the classical one also when the model's mask
    is empty or all frame (a model that saw nothing it knows), with its confidence said."""

    def __init__(self, model_dir: str | Path | None = None,
                 providers: list[str] | None = None) -> None:
        self.classical = ClassicalSegmenter()
        self.model: OnnxSegmenter | None = None
        folder = Path(model_dir) if model_dir else None
        if folder is not None and folder.is_dir():
            for kind in AUTO_ORDER:
                path = folder / f"{kind}.onnx"
                if path.is_file():
                    self.model = OnnxSegmenter(path, kind, providers)
                    break
        self.name = f"auto:{self.model.name}" if self.model else "auto:classical"
        self._last = threading.local()  # per thread: one instance serves concurrent requests

    @property
    def last_confidence(self) -> float | None:
        """Confidence of the last ``mask`` this thread made (``cutout`` reports it)."""
        return getattr(self._last, "conf", None)

    @property
    def last_notes(self) -> tuple[str, ...]:
        return getattr(self._last, "notes", ())

    def mask(self, image: Image.Image) -> np.ndarray:
        if self.model is not None:
            alpha = self.model.mask(image)
            conf = mask_confidence(alpha)
            if conf > 0.0:
                self._last.conf, self._last.notes = conf, (f"model {self.model.name}",)
                return alpha
            fallback = f"model {self.model.name} found no product; classical cutout used"
        else:
            fallback = "no model installed; classical cutout used"
        rgb = np.asarray(image.convert("RGB"))
        found = self.classical.find(rgb)
        signals = dict(found.signals or {})
        a8 = self.classical.refine(found, rgb, signals)
        conf, why = _confidence_from(signals)
        self._last.conf, self._last.notes = conf, (fallback, *why)
        return a8.astype(np.float32) * (1 / 255.0)


def create_segmenter(name: str = "classical", model_dir: str | Path | None = None) -> Segmenter:
    """``classical``, ``auto`` (an installed rembg model from ``model_dir``, else classical)
    or the name of a rembg model (``u2net``, ``isnet-general-use`` ...) whose ``NAME.onnx``
    is in ``model_dir``."""
    if name == "classical":
        return ClassicalSegmenter()
    if name == "auto":
        return AutoSegmenter(model_dir)
    if name == "fake":
        return FakeSegmenter()
    if name in ONNX_KINDS:
        if model_dir is None:
            raise ValueError(f"segmenter {name!r} needs ops.model_dir (a local folder holding "
                             f"{name}.onnx); models are never downloaded")
        return OnnxSegmenter(Path(model_dir) / f"{name}.onnx", name)
    raise ValueError(f"unknown segmenter {name!r}; known: classical, auto, "
                     f"{', '.join(ONNX_KINDS)}")


CONFIDENCE_INFO = "cutout_confidence"
"""``Image.info`` key of a cutout's confidence (0..1); ``CONFIDENCE_NOTES``: what lowered it."""
CONFIDENCE_NOTES = "cutout_notes"
LOW_CONFIDENCE = 0.5
"""Below this a cutout is reported as low confidence (``X-Cutout-Confidence: 0.31; low``)."""
HIGH_CONFIDENCE = 0.9
"""From this up a cutout is ``high``; between the two ``medium``. Since the calibration the
classical confidence is the chance the cutout is good (IoU ≥ 0.95): on the re-fit's 3312
cutouts (OPS 17) 14 of the 16 under IoU 0.93 are under 0.9, and 99 % of those at 0.97 or
over are at 0.9 or more; on OPS 21's 4758 with the lit sole (said13), 12 of 14 and 99.3 %."""


def mask_confidence(alpha: np.ndarray) -> float:
    """Confidence of a learned model's mask: how decided it is (few pixels half-way) over the
    product's extent, and not empty or the whole frame."""
    solid = alpha >= 0.5
    area = float(solid.mean())
    if area < 0.002 or area > 0.98:
        return 0.0
    unsure = float(((alpha > 0.15) & (alpha < 0.85)).sum()) / max(int(solid.sum()), 1)
    return round(float(np.clip(1 - (unsure - 0.03) * 4, 0, 1)), 3)


def confidence_label(conf: float) -> str:
    return "low" if conf < LOW_CONFIDENCE else "medium" if conf < HIGH_CONFIDENCE else "high"


def confidence_header(image: Image.Image) -> str | None:
    """``X-Cutout-Confidence`` value of an image made from a cutout ("0.93; high"), or None."""
    conf = image.info.get(CONFIDENCE_INFO)
    if conf is None:
        return None
    return f"{float(conf):.2f}; {confidence_label(float(conf))}"


def cutout(image: Image.Image, segmenter: Segmenter | None = None) -> Image.Image:
    """The photo as RGBA with the product's alpha; ``info["cutout_confidence"]`` (0..1) and
    ``info["cutout_notes"]`` (what lowered it) say how far to trust it."""
    seg = segmenter or ClassicalSegmenter()
    notes: tuple[str, ...] = ()
    if image.mode == "RGBA" and not isinstance(seg, ClassicalSegmenter):
        rgb = np.asarray(image.convert("RGB"))
    elif image.mode == "RGBA":
        if np.asarray(image.getchannel("A")).min() < 250:
            image.info[CONFIDENCE_INFO] = 1.0  # the seller's own alpha
            image.info[CONFIDENCE_NOTES] = ("alpha channel of the upload kept",)
            return image
        return cutout(image.convert("RGB"), seg)
    else:
        rgb = rgb_array(image if image.mode == "RGB" else image.convert("RGB"))
    # The classical segmenter takes the array we already have (a 2000² copy saved).
    if isinstance(seg, ClassicalSegmenter):
        found = seg.find(rgb)
        signals = dict(found.signals or {})
        a8 = seg.refine(found, rgb, signals)
        conf, notes = _confidence_from(signals)
    else:
        mask = seg.mask(image)
        a8 = cv2.convertScaleAbs(mask, alpha=255.0)
        conf = getattr(seg, "last_confidence", None)
        conf = mask_confidence(mask) if conf is None else conf
        notes = getattr(seg, "last_notes", ())
    rgba = cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    rgba[..., 3] = a8
    out = Image.fromarray(rgba, "RGBA")
    out.info[CONFIDENCE_INFO] = float(conf)
    out.info[CONFIDENCE_NOTES] = tuple(notes)
    return out
