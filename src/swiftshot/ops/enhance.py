"""Enhance: the corrections a photo retoucher makes first, each mild by default.

Order (``enhance`` applies them in this order): white balance → levels/exposure → denoise →
sharpen → upscale. Sharpening comes after denoising (or it sharpens the noise) and before the
upscale (the resampler keeps it). An alpha channel is carried through untouched (resized on
upscale).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from PIL import Image


class Upscaler(Protocol):
    name: str

    def upscale(self, image: Image.Image, factor: float) -> Image.Image: ...


class LanczosUpscaler:
    """Lanczos resampling. A super-resolution model can replace it behind the same Protocol."""

    name = "lanczos"

    def upscale(self, image: Image.Image, factor: float) -> Image.Image:
        if factor == 1:
            return image
        w, h = image.size
        return image.resize((max(1, round(w * factor)), max(1, round(h * factor))),
                            Image.Resampling.LANCZOS)


@dataclass(frozen=True)
class EnhanceParams:
    white_balance: bool = True
    levels: bool = True
    denoise: float = 0.0
    """0..1: edge-preserving smoothing strength."""
    sharpen: float = 0.4
    """Unsharp-mask amount (0 = off, 1 = strong)."""
    sharpen_radius: float = 1.2
    upscale: float = 1.0
    """Scale factor (1-4)."""


def white_balance(rgb: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Grey-world on the mid-tones: the average of pixels that are neither near black nor
    clipped should be neutral. Gains are limited so a product that is itself one strong colour
    filling the frame is not turned grey."""
    lum = rgb.mean(2)
    sel = (lum > 30) & (lum < 235)
    if sel.sum() < 100:
        return rgb
    means = rgb[sel].mean(0)
    gains = np.clip(means.mean() / np.maximum(means, 1), 0.8, 1.25) ** strength
    return cv2.multiply(rgb, np.array([*gains, 0.0]), dtype=cv2.CV_8U)


def auto_levels(rgb: np.ndarray, clip: float = 0.005) -> np.ndarray:
    """Stretch luminance so the darkest/brightest ``clip`` fraction touch black/white, the same
    curve on every channel so hues do not shift; then lift a dark photo's mid-tones."""
    lum = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hist = np.bincount(lum.ravel(), minlength=256).cumsum()
    n = hist[-1]
    lo = int(np.searchsorted(hist, clip * n))
    hi = int(np.searchsorted(hist, (1 - clip) * n))
    if hi - lo < 32:
        return rgb  # flat image: stretching would amplify noise only
    x = np.arange(256, dtype=np.float32)
    y = np.clip((x - lo) / (hi - lo), 0, 1)
    median = float(np.clip((np.searchsorted(hist, 0.5 * n) - lo) / (hi - lo), 0.01, 0.99))
    if median < 0.4:  # under-exposed: gamma that moves the median towards 0.45, at most 1.6×
        y = y ** max(np.log(0.45) / np.log(median), 1 / 1.6)
    lut = np.clip(y * 255 + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)


def denoise(rgb: np.ndarray, strength: float) -> np.ndarray:
    if strength <= 0:
        return rgb
    return cv2.bilateralFilter(rgb, 5, 10 + 40 * strength, 3)


def unsharp(rgb: np.ndarray, amount: float, radius: float = 1.2, threshold: int = 2) -> np.ndarray:
    """Unsharp mask; differences below ``threshold`` levels are left alone (flat areas and
    noise stay smooth)."""
    if amount <= 0:
        return rgb
    blur = cv2.GaussianBlur(rgb, (0, 0), radius)
    sharp = cv2.addWeighted(rgb, 1 + amount, blur, -amount, 0)
    if threshold:
        low = cv2.absdiff(rgb, blur).max(2) < threshold
        sharp[low] = rgb[low]
    return sharp


def enhance(image: Image.Image, params: EnhanceParams | None = None,
            upscaler: Upscaler | None = None) -> Image.Image:
    p = params or EnhanceParams()
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    rgb = np.array(image.convert("RGB"))
    if p.white_balance:
        rgb = white_balance(rgb)
    if p.levels:
        rgb = auto_levels(rgb)
    rgb = denoise(rgb, p.denoise)
    rgb = unsharp(rgb, p.sharpen, p.sharpen_radius)
    out = Image.fromarray(rgb, "RGB")
    if alpha is not None:
        out.putalpha(alpha)
    if p.upscale != 1:
        out = (upscaler or LanczosUpscaler()).upscale(out, p.upscale)
    return out
