"""Cutout segmenters' speed: classical vs rembg-family ONNX models of real size.

    python -m swiftshot.benchmarks.segmenters [--sizes 1500] [--iterations 5] [--out FILE]

No weights are downloaded: the ONNX models are built here with the published architectures
and random weights (speed does not depend on the weights): **U²-Net** (``u2net``: RSU7..RSU4F
encoder-decoder, 44 M parameters, 320² input, as rembg runs it), **U²-Netp** (``u2netp``, 1.1 M,
320²) and an **IS-Net-like** graph (``isnet-general-use``: the U²-Net body behind a stride-2
input conv and pooling, 1024² input, as IS-Net DIS is built). BiRefNet (a Swin-L backbone,
~220 M parameters) is not built here. Each is timed through ``OnnxSegmenter.mask`` (resize,
normalise, run, resize back) on a photo of each size, next to the classical segmenter.

Prints a table and writes JSON (with the machine and load average) to
``bench/results/segmenters.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from swiftshot.benchmarks.machine import print_table, write_result


def _u2net_module(full: bool = True, isnet: bool = False):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class REBNCONV(nn.Module):
        def __init__(self, i: int, o: int, d: int = 1) -> None:
            super().__init__()
            self.conv = nn.Conv2d(i, o, 3, padding=d, dilation=d)
            self.bn = nn.BatchNorm2d(o)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    def up(x, like):
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)

    class RSU(nn.Module):
        """RSU-L: a small U-Net of ``depth`` levels with a residual connection."""

        def __init__(self, depth: int, i: int, m: int, o: int) -> None:
            super().__init__()
            self.depth = depth
            self.inp = REBNCONV(i, o)
            self.enc = nn.ModuleList([REBNCONV(o, m)] + [REBNCONV(m, m) for _ in range(depth - 2)])
            self.bottom = REBNCONV(m, m, 2)
            self.dec = nn.ModuleList([REBNCONV(2 * m, m) for _ in range(depth - 2)] +
                                     [REBNCONV(2 * m, o)])

        def forward(self, x):
            hin = self.inp(x)
            h = hin
            skips = []
            for j, layer in enumerate(self.enc):
                h = layer(h if j == 0 else F.max_pool2d(h, 2, 2, ceil_mode=True))
                skips.append(h)
            h = self.bottom(h)
            for j, layer in enumerate(self.dec):
                s = skips[-1 - j]
                h = layer(torch.cat([up(h, s), s], 1))
            return h + hin

    class RSUF(nn.Module):
        """RSU-4F: dilations instead of pooling (the deepest stages)."""

        def __init__(self, i: int, m: int, o: int) -> None:
            super().__init__()
            self.inp = REBNCONV(i, o)
            self.e = nn.ModuleList([REBNCONV(o, m, 1), REBNCONV(m, m, 2), REBNCONV(m, m, 4)])
            self.b = REBNCONV(m, m, 8)
            self.d = nn.ModuleList([REBNCONV(2 * m, m, 4), REBNCONV(2 * m, m, 2),
                                    REBNCONV(2 * m, o, 1)])

        def forward(self, x):
            hin = self.inp(x)
            s1 = self.e[0](hin)
            s2 = self.e[1](s1)
            s3 = self.e[2](s2)
            h = self.b(s3)
            h = self.d[0](torch.cat([h, s3], 1))
            h = self.d[1](torch.cat([h, s2], 1))
            return self.d[2](torch.cat([h, s1], 1)) + hin

    mid = (32, 32, 64, 128, 256) if full else (16, 16, 16, 16, 16)

    class U2Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            first = 3
            if isnet:
                self.conv_in = nn.Conv2d(3, 64, 3, stride=2, padding=1)
                first = 64
            o1 = 64
            o2, o3, o4, o5 = (128, 256, 512, 512) if full else (64, 64, 64, 64)
            self.s1 = RSU(7, first, mid[0], o1)
            self.s2 = RSU(6, o1, mid[1], o2)
            self.s3 = RSU(5, o2, mid[2], o3)
            self.s4 = RSU(4, o3, mid[3], o4)
            self.s5 = RSUF(o4, mid[4], o5)
            self.s6 = RSUF(o5, mid[4], o5)
            self.s5d = RSUF(2 * o5, mid[4], o4)
            self.s4d = RSU(4, 2 * o4, mid[3], o3)
            self.s3d = RSU(5, 2 * o3, mid[2], o2)
            self.s2d = RSU(6, 2 * o2, mid[1], o1)
            self.s1d = RSU(7, 2 * o1, 16, 64)
            self.sides = nn.ModuleList([nn.Conv2d(ch, 1, 3, padding=1)
                                        for ch in (64, o1, o2, o3, o4, o5)])
            self.out = nn.Conv2d(6, 1, 1)

        def forward(self, x):
            size = x.shape[2:]
            if isnet:
                x = F.max_pool2d(self.conv_in(x), 2, 2, ceil_mode=True)
            p = lambda t: F.max_pool2d(t, 2, 2, ceil_mode=True)  # noqa: E731
            h1 = self.s1(x)
            h2 = self.s2(p(h1))
            h3 = self.s3(p(h2))
            h4 = self.s4(p(h3))
            h5 = self.s5(p(h4))
            h6 = self.s6(p(h5))
            d5 = self.s5d(torch.cat([up(h6, h5), h5], 1))
            d4 = self.s4d(torch.cat([up(d5, h4), h4], 1))
            d3 = self.s3d(torch.cat([up(d4, h3), h3], 1))
            d2 = self.s2d(torch.cat([up(d3, h2), h2], 1))
            d1 = self.s1d(torch.cat([up(d2, h1), h1], 1))
            sides = [F.interpolate(s(t), size=size, mode="bilinear", align_corners=False)
                     for s, t in zip(self.sides, (d1, d2, d3, d4, d5, h6), strict=True)]
            return torch.sigmoid(self.out(torch.cat(sides, 1)))

    return U2Net().eval()


ARCHS = {"u2net": (True, False, 320), "u2netp": (False, False, 320),
         "isnet-general-use": (True, True, 1024)}


def build_onnx(kind: str, path: Path) -> int:
    """Export the architecture of ``kind`` (random weights) to ``path``; returns parameters."""
    import torch

    full, isnet, side = ARCHS[kind]
    model = _u2net_module(full, isnet)
    x = torch.randn(1, 3, side, side)
    with torch.no_grad():
        torch.onnx.export(model, (x,), str(path), input_names=["input.1"], output_names=["out"],
                          opset_version=17, dynamo=False)
    return sum(p.numel() for p in model.parameters())


def run(sizes: list[int], iterations: int, kinds: list[str],
        model_dir: str | None = None) -> list[dict[str, Any]]:
    import numpy as np
    from PIL import Image

    from swiftshot.ops.cutout import ClassicalSegmenter, OnnxSegmenter
    from swiftshot.testing.products import make_photo

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        segs: list[tuple[str, Any, int]] = [("classical", ClassicalSegmenter(), 0)]
        for kind in kinds:
            path = Path(model_dir or tmp) / f"{kind}.onnx"
            if path.is_file():  # built before (random weights: any build times the same)
                import onnx

                m = onnx.load(str(path))
                params = sum(int(np.prod(t.dims)) for t in m.graph.initializer)
            else:
                params = build_onnx(kind, path)
            segs.append((kind, OnnxSegmenter(path, kind), params))
        for size in sizes:
            photo: Image.Image = make_photo("bottle_white_sweep", (size, size)).image
            for name, seg, params in segs:
                seg.mask(photo)  # warm-up
                times = []
                for _ in range(iterations):
                    t0 = time.perf_counter()
                    seg.mask(photo)
                    times.append((time.perf_counter() - t0) * 1000)
                rows.append({"segmenter": name, "photo": f"{size}x{size}",
                             "model input": ARCHS[name][2] if name in ARCHS else "384 work copy",
                             "params (M)": round(params / 1e6, 1) if params else 0,
                             "p50 ms": statistics.median(times), "min ms": min(times),
                             "n": iterations})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m swiftshot.benchmarks.segmenters")
    ap.add_argument("--sizes", default="1500")
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--kinds", default=",".join(ARCHS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--model-dir", default=None,
                    help="keep the built models here (and reuse them on the next run)")
    args = ap.parse_args(argv)
    rows = run([int(s) for s in args.sizes.split(",")], args.iterations,
               [k for k in args.kinds.split(",") if k], args.model_dir)
    print_table(rows)
    load = os.getloadavg()[0]
    print(f"load average (1 min) {load:.2f}")
    path = write_result("segmenters", {"rows": rows, "loadavg_1m": load}, args.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
