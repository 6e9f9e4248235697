"""The CLI paths into the diffusion engine: generate, engines, bench models."""

from __future__ import annotations

import json

import pytest
from PIL import Image

pytest.importorskip("diffusers")

from swiftshot.cli import main  # noqa: E402
from swiftshot.engines.diffusion import cpu_has_bf16  # noqa: E402

pytestmark = pytest.mark.diffusion


def test_generate_with_a_local_pipeline_folder(tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "mug.png"
    rc = main(["generate", "white mug on marble", "--engine", "diffusion", "--model",
               str(tiny_sd_dir), "--size", "64x64", "-n", "2", "--seed", "3", "-o", str(out)])
    assert rc == 0
    a, b = Image.open(tmp_path / "mug-1.png"), Image.open(tmp_path / "mug-2.png")
    assert a.size == b.size == (64, 64)
    assert a.tobytes() != b.tobytes()  # seeds 3 and 4
    assert "seed=4" in capsys.readouterr().out


def test_generate_with_a_missing_model_is_one_line_and_exit_2(tmp_path, capsys):
    rc = main(["generate", "mug", "--engine", "diffusion", "--model", str(tmp_path / "nope"),
               "--size", "64x64", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "does not exist" in err and "model_index.json" in err
    assert not (tmp_path / "x.png").exists()


def test_engines_lists_the_configured_model_and_switches(tiny_sd_dir, monkeypatch, capsys):
    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__MODEL", str(tiny_sd_dir))
    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__INT8", "true")
    # a configured backend: its version is known without the auto probe
    monkeypatch.setenv("SWIFTSHOT_ENGINE__DIFFUSION__BACKEND", "torch")
    assert main(["engines", "--json"]) == 0
    rows = {r["engine"]: r for r in json.loads(capsys.readouterr().out)}
    d = rows["diffusion"]
    assert d["available"] and d["pipeline"] == "StableDiffusionPipeline" and d["int8"] is True
    assert d["version"].endswith(".int8")


@pytest.mark.slow
def test_bench_models_on_a_local_folder_writes_rows_and_deviations(tiny_sd_dir, tiny_taesd_dir,
                                                                     tmp_path, capsys):
    out = tmp_path / "models.json"
    rc = main(["bench", "models", "--only", "diffusion", "--model", str(tiny_sd_dir),
               "--tiny-vae", str(tiny_taesd_dir), "--sizes", "64", "--batches", "1,2",
               "--dtypes", "fp32,bf16", "--out", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert "machine" in result and result["diffusion"]["random_weights"] is False
    rows = result["diffusion"]["rows"]
    assert [(r["variant"], r["batch"]) for r in rows] == [("fp32", 1), ("fp32", 2),
                                                          ("bf16", 1), ("bf16", 2)]
    for r in rows:
        # a variant or shape that raised is a row with "error" and no timings: show why
        assert "error" not in r, r
        for k in ("text_enc_s", "unet_step_s", "vae_decode_s", "taesd_decode_s", "e2e_vae_s",
                  "e2e_taesd_s", "peak_mem_gb"):
            assert r[k] > 0, k
    fp32, bf16 = rows[0], rows[2]
    assert fp32["dev_vae_max"] == 0 and bf16["dev_vae_mean"] >= 0  # bf16 measured against fp32
    if cpu_has_bf16():
        # Native bf16 kernels change the tiny random pipeline's pixels; with bf16 emulated (a
        # 2-core AMD EPYC, Zen 3) its 64² output came out equal to fp32's in uint8 levels.
        assert bf16["dev_vae_mean"] > 0
    assert not (tmp_path / "models.json.tmp").exists()
    printed = capsys.readouterr().out
    assert "e2e_taesd_s" in printed and "goal 64²" in printed


@pytest.mark.parametrize("argv, message", [
    (["--dtypes", "fp8"], "variant 'fp8'"),
    (["--sizes", "100"], "multiples of 64"),
    (["--batches", "0"], "positive integers"),
])
def test_bench_models_bad_arguments_exit_2(argv, message, tmp_path, capsys):
    rc = main(["bench", "models", "--only", "diffusion", "--model", str(tmp_path), *argv])
    assert rc == 2 and message in capsys.readouterr().err
