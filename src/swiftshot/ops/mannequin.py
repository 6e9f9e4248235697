"""Ghost mannequin: take the mannequin out of a garment photo so the garment looks worn by
no one, hollow at the neck.

Input: a front photo of the garment on a mannequin (and optionally a second photo of the
inside back of the garment, the neck label area, shot flat). The mannequin is found either from
a mask the caller gives, or by keying its colour (``key_color``: mannequins are one flat
colour — matte white, grey, black or skin — chosen to differ from the garment).

Steps: cut the photo out (garment + mannequin) → find the mannequin → remove it → the part of
the mannequin that sat *inside* the garment's outline (the neck opening: you see the inner
back there on a real garment) is filled with the inside photo, scaled to the opening, or, with
no inside photo, with the garment's own colour in shade (the inside of a garment is darker,
lit only through the opening); the inside photo keeps its proportions, its collar on the
opening's top edge, in the inside's shade. Mannequin parts outside the outline (head, neck above the
collar, the stand) simply become transparent.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from swiftshot.ops.compose import alpha_bbox, split
from swiftshot.ops.cutout import ClassicalSegmenter, Segmenter

RGB = tuple[int, int, int]


def key_mask(rgb: np.ndarray, key_color: RGB, tolerance: float = 28.0) -> np.ndarray:
    """Pixels within ``tolerance`` (CIE76 ΔE, in Lab) of the mannequin's colour."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    key = cv2.cvtColor(np.uint8([[key_color]]), cv2.COLOR_RGB2LAB).astype(np.float32)[0, 0]
    # OpenCV's 8-bit Lab scales L to 0..255; bring it back to 0..100 so ΔE means ΔE.
    scale = np.array([100 / 255, 1, 1], np.float32)
    d = np.sqrt((((lab - key) * scale) ** 2).sum(2))
    m = (d < tolerance).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    return cv2.morphologyEx(cv2.morphologyEx(m, cv2.MORPH_OPEN, k), cv2.MORPH_CLOSE, k).astype(bool)


def _hull(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros(mask.shape, np.uint8)
    if contours:
        cv2.fillConvexPoly(out, cv2.convexHull(np.concatenate(contours)), 1)
    return out.astype(bool)


def _neck_opening(inside: np.ndarray, garment: np.ndarray) -> np.ndarray:
    """Of the mannequin inside the garment's outline, the piece at the neck: near the top of
    the garment and near its centre line (not the torso showing under a sleeve)."""
    box = alpha_bbox(garment.astype(np.float32), 0.5)
    if box is None or not inside.any():
        return np.zeros_like(inside)
    x0, y0, x1, y1 = box
    n, labels, stats, cents = cv2.connectedComponentsWithStats(inside.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    for i in range(1, n):
        cx, cy = cents[i]
        top = stats[i, cv2.CC_STAT_TOP]
        keep[i] = (top <= y0 + 0.2 * (y1 - y0) and abs(cx - (x0 + x1) / 2) < 0.2 * (x1 - x0))
    return keep[labels]


def _inner_fill(garment_rgb: np.ndarray, garment: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """The garment's colour in shade: darker at the top of the opening (deepest inside)."""
    colour = np.median(garment_rgb[garment], 0) if garment.any() else np.array([128, 128, 128])
    ys = np.nonzero(hole.any(1))[0]
    out = np.zeros_like(garment_rgb, dtype=np.float32)
    if not len(ys):
        return out.astype(np.uint8)
    t = np.clip((np.arange(garment_rgb.shape[0]) - ys[0]) / max(ys[-1] - ys[0], 1), 0, 1)
    shade = (0.45 + 0.2 * t)[:, None, None]
    out[:] = colour[None, None, :] * shade
    return np.clip(out, 0, 255).astype(np.uint8)


def _inside_fill(inside: Image.Image, hole: np.ndarray, segmenter: Segmenter) -> np.ndarray:
    """The inside photo's garment placed in the neck opening as a photographer does it: its
    collar (the top of the inside photo's garment, where the label is) on the opening's top
    edge, scaled to cover the opening's width with its proportions kept (not stretched to the
    opening's box), centred on the opening, and in the shade of the inside (lit through the
    opening: darker deeper down)."""
    h, w = hole.shape
    rgb_in, a_in = split(inside if inside.mode == "RGBA" else _cut(inside, segmenter))
    box_in = alpha_bbox(a_in, 0.5)
    if box_in is None or (box_in[2] - box_in[0]) * (box_in[3] - box_in[1]) < 0.3 * a_in.size:
        # Shot filling the frame (no backdrop to cut away): the whole photo is the inside.
        box_in = (0, 0, rgb_in.shape[1], rgb_in.shape[0])
    crop = rgb_in[box_in[1]:box_in[3], box_in[0]:box_in[2]]
    ys, xs = np.nonzero(hole)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    ow, oh = x1 - x0, y1 - y0
    ch, cw = crop.shape[:2]
    s = max(ow / cw, oh / ch) * 1.04                     # cover, proportions kept
    tw, th = max(1, round(cw * s)), max(1, round(ch * s))
    scaled = cv2.resize(crop, (tw, th), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    out = np.zeros((h, w, 3), np.uint8)
    left = x0 + ow // 2 - tw // 2                        # centred on the opening
    sx0, dx0 = max(0, -left), max(0, left)
    sx1 = min(tw, w - left)
    sy1 = min(th, h - y0)
    out[y0:y0 + sy1, dx0:dx0 + (sx1 - sx0)] = scaled[:sy1, sx0:sx1]
    t = np.clip((np.arange(h, dtype=np.float32) - y0) / max(oh, 1), 0, 1)
    shade = (0.92 - 0.22 * t)[:, None, None]             # the collar lit, the inside in shade
    return np.clip(out.astype(np.float32) * shade, 0, 255).astype(np.uint8)


def _cut(image: Image.Image, segmenter: Segmenter) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray((segmenter.mask(image) * 255 + 0.5).astype(np.uint8), "L"))
    return rgba


def ghost_mannequin(front: Image.Image, *, mannequin_mask: np.ndarray | None = None,
                    key_color: RGB | None = None, tolerance: float = 28.0,
                    inside: Image.Image | None = None,
                    segmenter: Segmenter | None = None) -> Image.Image:
    """RGBA garment with the mannequin removed and the neck opening filled. Give either
    ``mannequin_mask`` (bool/float HxW, True on the mannequin) or ``key_color``."""
    if mannequin_mask is None and key_color is None:
        raise ValueError("ghost mannequin needs the mannequin: give mannequin_mask or key_color")
    seg = segmenter or ClassicalSegmenter()
    rgba = front if front.mode == "RGBA" else _cut(front, seg)
    rgb, alpha = split(rgba)
    if mannequin_mask is not None:
        if mannequin_mask.shape != alpha.shape:
            raise ValueError(f"mannequin mask is {mannequin_mask.shape[1]}x{mannequin_mask.shape[0]};"
                             f" the photo is {alpha.shape[1]}x{alpha.shape[0]}")
        man = mannequin_mask > 0.5 if mannequin_mask.dtype != bool else mannequin_mask
    else:
        man = key_mask(rgb, key_color, tolerance)  # type: ignore[arg-type]
    man = man & (alpha > 0.3)
    # The backdrop seen past the mannequin's neck in the corners of the opening is enclosed
    # by collar and neck, so the cutout keeps it: backdrop-coloured pixels right beside the
    # mannequin go with it (they were two white notches beside the collar).
    if man.any():
        border = np.concatenate([rgb[:4].reshape(-1, 3), rgb[:, :4].reshape(-1, 3),
                                 rgb[:, -4:].reshape(-1, 3)])
        backdrop = tuple(int(v) for v in np.median(border, 0))
        beside = cv2.dilate(man.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
        man = man | (key_mask(rgb, backdrop, 10.0) & beside & (alpha > 0.3))
    garment = (alpha > 0.5) & ~man
    # The garment's own body (its largest piece) decides what is "inside" it.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(garment.astype(np.uint8), connectivity=8)
    if n > 1:
        garment = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    # The opening: inside the garment's outline at the neck, what is not garment — the
    # mannequin, and the backdrop seen past the mannequin's neck in the opening's corners
    # (left out before: two white notches beside the collar).
    hole = _neck_opening((man | (alpha < 0.5)) & _hull(garment) & ~garment, garment)
    fill = _inside_fill(inside, hole, seg) if (inside is not None and hole.any()) else \
        _inner_fill(rgb, garment, hole)
    out_rgb = rgb.copy()
    out_a = alpha.copy()
    out_a[man] = 0.0
    out_rgb[hole] = fill[hole]
    out_a[hole] = 1.0
    if inside is not None and hole.any():
        # Soft seam where the inside meets the front's neckline: a pixel or two blended.
        ring = cv2.dilate(hole.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & \
            ~hole & garment
        out_rgb[ring] = ((out_rgb[ring].astype(np.uint16) * 3 + fill[ring]) // 4).astype(np.uint8)
    # Soften the cut along the mannequin's edge by a pixel so it does not look stencilled.
    edge = cv2.dilate(man.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~man & ~hole
    out_a[edge] *= 0.85
    out = Image.fromarray(out_rgb, "RGB").convert("RGBA")
    out.putalpha(Image.fromarray((out_a * 255 + 0.5).astype(np.uint8), "L"))
    return out
