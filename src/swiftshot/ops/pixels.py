"""Pillow's own pixel memory as a read-only numpy view, without a copy.

``np.asarray(image)`` goes through ``Image.tobytes()``: Pillow packs its storage (four bytes a
pixel for RGB: ``RGBX``) into 64 KB chunks, joins them into one ``bytes`` and numpy wraps that:
two passes over a fresh 12 MB at 2000², ~5-6 ms of CPU, most of it page faults on the new
buffers. Pillow (≥ 11.2) exports an image stored in one block through the Arrow C data
interface (``Image.__arrow_c_array__``), which is only pointers: :func:`view` reads them and
gives numpy the same memory, and :func:`rgb_array` packs RGB out of it in one OpenCV pass.

The values are the same bytes ``np.asarray`` gives (a test compares them). Where Pillow cannot
export (an image split over several blocks, an older Pillow, a mode without a 1- or 4-byte
layout) these fall back to ``np.asarray``.
"""

from __future__ import annotations

import ctypes
from typing import Any

import cv2
import numpy as np
from PIL import Image


class _Schema(ctypes.Structure):
    pass


_Schema._fields_ = [("format", ctypes.c_char_p), ("name", ctypes.c_char_p),
                    ("metadata", ctypes.c_char_p), ("flags", ctypes.c_int64),
                    ("n_children", ctypes.c_int64),
                    ("children", ctypes.POINTER(ctypes.POINTER(_Schema))),
                    ("dictionary", ctypes.POINTER(_Schema)), ("release", ctypes.c_void_p),
                    ("private_data", ctypes.c_void_p)]


class _Array(ctypes.Structure):
    pass


_Array._fields_ = [("length", ctypes.c_int64), ("null_count", ctypes.c_int64),
                   ("offset", ctypes.c_int64), ("n_buffers", ctypes.c_int64),
                   ("n_children", ctypes.c_int64), ("buffers", ctypes.POINTER(ctypes.c_void_p)),
                   ("children", ctypes.POINTER(ctypes.POINTER(_Array))),
                   ("dictionary", ctypes.POINTER(_Array)), ("release", ctypes.c_void_p),
                   ("private_data", ctypes.c_void_p)]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

_CHANNELS = {"RGB": 4, "RGBA": 4, "RGBX": 4, "L": 1}
"""Modes Pillow stores one byte (L) or four bytes (RGB as RGBX, RGBA) a pixel."""


class _Pixels:
    """The array's base: holds the Arrow capsules, so Pillow's memory lives as long as the
    view does (their destructor releases it), whatever becomes of the image."""

    __slots__ = ("__array_interface__", "_capsules")

    def __init__(self, capsules: tuple[Any, Any], interface: dict[str, Any]) -> None:
        self._capsules = capsules
        self.__array_interface__ = interface


def view(image: Image.Image) -> np.ndarray | None:
    """Read-only (h, w, 4) uint8 view of an RGB (the 4th byte is padding), RGBA or RGBX
    image's pixels, or (h, w) of an L image; None when Pillow cannot export it whole."""
    channels = _CHANNELS.get(image.mode)
    w, h = image.size
    if channels is None or not w or not h or not hasattr(image, "__arrow_c_array__"):
        return None
    try:
        capsules = image.__arrow_c_array__()
        schema = ctypes.cast(_capsule_pointer(capsules[0], b"arrow_schema"),
                             ctypes.POINTER(_Schema)).contents
        arr = ctypes.cast(_capsule_pointer(capsules[1], b"arrow_array"),
                          ctypes.POINTER(_Array)).contents
    except (ValueError, TypeError, OSError, AttributeError):
        return None  # several blocks, or not exportable: the caller copies
    n = w * h
    if arr.length != n or arr.offset:
        return None
    if channels == 1:
        if schema.format != b"C" or arr.n_buffers != 2:
            return None
        data = arr.buffers[1]
    else:
        if (schema.format != f"+w:{channels}".encode() or schema.n_children != 1
                or schema.children[0].contents.format != b"C" or arr.n_children != 1):
            return None
        child = arr.children[0].contents
        if child.length != n * channels or child.offset or child.n_buffers != 2:
            return None
        data = child.buffers[1]
    if not data:
        return None
    shape = (h, w) if channels == 1 else (h, w, channels)
    return np.asarray(_Pixels(capsules, {"version": 3, "shape": shape, "typestr": "|u1",
                                         "data": (data, True)}))


def rgb_array(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """An RGB image's pixels (within ``box``: x0, y0, x1, y1) as a new contiguous (h, w, 3)
    uint8 array: ``np.asarray(image.crop(box))``'s bytes in one OpenCV pass over Pillow's
    memory instead of a crop and ``tobytes``' two."""
    v = view(image) if image.mode == "RGB" else None
    if v is None:
        return np.asarray(image if box is None else image.crop(box))
    if box is not None:
        x0, y0, x1, y1 = box
        v = v[y0:y1, x0:x1]
    return cv2.cvtColor(v, cv2.COLOR_RGBA2RGB)


def array(image: Image.Image, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``np.asarray(image.crop(box))`` without its copies where Pillow can export: RGBA and L
    as a read-only view of the image's memory, RGB packed as :func:`rgb_array`; other modes
    (and images Pillow cannot export) through ``np.asarray``."""
    if image.mode == "RGB":
        return rgb_array(image, box)
    v = view(image) if image.mode in ("RGBA", "L") else None
    if v is None:
        return np.asarray(image if box is None else image.crop(box))
    if box is not None:
        x0, y0, x1, y1 = box
        v = v[y0:y1, x0:x1]
    return v
