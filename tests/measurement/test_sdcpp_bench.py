"""bench/sdcpp_convert.py and bench/sdcpp_bench.py (the stable-diffusion.cpp side by side): the
folder handed to sd.cpp has the tensor names its diffusers loader maps, and the timings are read
from its log. sd.cpp itself is built outside the repo (bench/sdcpp.sh) and not run here."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_convert_prefixes_the_text_encoder_and_links_the_rest(tiny_sd_dir, tiny_taesd_dir,
                                                              tmp_path):
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    conv = _load("sdcpp_convert")
    src = tmp_path / "sd"
    shutil.copytree(tiny_sd_dir, src)
    shutil.copytree(tiny_taesd_dir, src / "taesd")
    with safe_open(str(src / "text_encoder/model.safetensors"), "pt") as f:
        before = {k: f.get_tensor(k) for k in f.keys()}
    out = tmp_path / "out"
    assert conv.main(["--out", str(out), "--diffusers", str(src)]) == 0
    dst = out / "sd21"
    with safe_open(str(dst / "text_encoder/model.safetensors"), "pt") as f:
        after = {k: f.get_tensor(k) for k in f.keys()}
    # every tensor once, under the name sd.cpp maps (te.text_model.* → cond_stage_model...)
    assert len(after) == len(before) and all(k.startswith("text_model.") for k in after)
    for k, v in before.items():
        assert after[k if k.startswith("text_model.") else "text_model." + k].equal(v)
    assert (dst / "unet").resolve() == (src / "unet").resolve()
    assert (dst / "taesd/diffusion_pytorch_model.safetensors").is_file()
    # a folder without the layout sd.cpp reads is refused before sd.cpp is started
    (src / "taesd/diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(out)
    with pytest.raises(Exception):  # noqa: B017 - safetensors' own error for a missing file
        conv.main(["--out", str(out), "--diffusers", str(src)])


def test_stage_times_are_read_from_the_sdcpp_log():
    bench = _load("sdcpp_bench")
    log = "\n".join([
        "[INFO ] model_loader.cpp:1304 - loading tensors completed, taking 4.44s (read: 1.03s)",
        "[INFO ] stable-diffusion.cpp:5296 - get_learned_condition completed, taking 7.22s",
        "[INFO ] stable-diffusion.cpp:5711 - sampling completed, taking 48.09s",
        "[INFO ] stable-diffusion.cpp:5391 - decode_first_stage completed, taking 22.62s",
        "[INFO ] stable-diffusion.cpp:5861 - generate_image completed in 77.96s",
        "[INFO ] stable-diffusion.cpp:5711 - sampling completed, taking 40.5s",
    ])
    st = bench._stages(log)
    assert st["sampling_s"] == [48.09, 40.5] and st["text_encoder_s"] == [7.22]
    assert st["decode_s"] == [22.62] and st["generate_s"] == [77.96] and st["load_s"] == [4.44]
    row = {"path": "sd-server (HTTP)", "wtype": "q8_0", "wall_s": 9.5, "cpu_s": 18.0,
           "load_before": [3.0], "load_after": [4.0]}
    ours = {"phase": "warm", "new_prompt_wall_s": 2.1, "new_prompt_cpu_s": 4.0,
            "load_before": [2.0], "load_after": [2.5]}
    table = bench.side_by_side([{"machine": {"date": "d1"}, "rows": [row]},
                                {"machine": {"date": "d2"}, "quantize": "int8", "rows": [ours]}])
    assert "| stable-diffusion.cpp | sd-server | q8_0 | 9.5 s | 18.0 | d1 | 3.0 → 4.0 |" in table
    assert "| swiftshot (OpenVINO) | server | bf16 + int8 (quantize) | 2.1 s | 4.0 | d2 |" in table
