"""``swiftshot generate`` with the studio engine: files a user can open, and clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from swiftshot.cli import main

PIL_FORMAT = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "avif": "AVIF"}


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


@pytest.mark.parametrize("ext", ["avif", "webp", "jpg", "png"])
def test_writes_a_valid_1024_image_in_each_format(tmp_path: Path, ext: str, capsys) -> None:
    out = tmp_path / f"shot.{ext}"
    assert main(["generate", "white marble counter, soft light", "--seed", "3", "-o", str(out)]) == 0
    with Image.open(out, formats=[PIL_FORMAT[ext]]) as img:
        assert img.format == PIL_FORMAT[ext] and img.size == (1024, 1024)
        img.load()
    assert "seed=3" in capsys.readouterr().out


def test_size_quality_and_explicit_format(tmp_path: Path) -> None:
    out = tmp_path / "wide"
    assert main(["generate", "oak wood", "--size", "640x320", "--format", "jpg", "--quality", "40",
                 "-o", str(out)]) == 0
    with Image.open(out) as img:
        assert img.format == "JPEG" and img.size == (640, 320)


def test_same_seed_same_pixels_other_seed_other(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for path, seed in zip(paths, ("5", "5", "6"), strict=True):
        assert main(["generate", "terrazzo", "--size", "256x256", "--seed", seed, "-o", str(path)]) == 0
    a, b, c = (pixels(p) for p in paths)
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1


def test_n_writes_numbered_files_with_distinct_images(tmp_path: Path) -> None:
    assert main(["generate", "linen", "--size", "128x128", "-n", "3", "-o", str(tmp_path / "set.webp")]) == 0
    files = sorted(tmp_path.glob("set-*.webp"))
    assert [f.name for f in files] == ["set-1.webp", "set-2.webp", "set-3.webp"]
    imgs = [pixels(f) for f in files]
    assert not np.array_equal(imgs[0], imgs[1]) and not np.array_equal(imgs[1], imgs[2])


def run_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("swiftshot: error: ")
    return err


def test_unsupported_format(tmp_path: Path, capsys) -> None:
    err = run_error(["generate", "paper", "-o", str(tmp_path / "x.gif")], capsys)
    assert "'.gif'" in err and ".avif" in err
    err = run_error(["generate", "paper", "--format", "bmp", "-o", str(tmp_path / "x")], capsys)
    assert "'bmp'" in err and "webp" in err
    assert not list(tmp_path.iterdir())


def test_missing_folder(tmp_path: Path, capsys) -> None:
    err = run_error(["generate", "paper", "-o", str(tmp_path / "nope" / "x.png")], capsys)
    assert "does not exist" in err and "nope" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path: Path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        err = run_error(["generate", "paper", "-o", str(ro / "x.png")], capsys)
        assert "permission denied" in err or "not writable" in err
    finally:
        ro.chmod(0o755)


def test_unwritable_folder_even_for_root(capsys) -> None:
    # /proc refuses new files whoever asks, so this refusal is checked under root too
    err = run_error(["generate", "paper", "-o", "/proc/swiftshot-test.png"], capsys)
    assert "/proc" in err and "not writable" in err


def test_output_is_a_folder(tmp_path: Path, capsys) -> None:
    (tmp_path / "d.png").mkdir()
    err = run_error(["generate", "paper", "-o", str(tmp_path / "d.png")], capsys)
    assert "folder" in err


@pytest.mark.parametrize("argv,words", [
    (["--size", "99999x3"], ["width", "2048", "99999"]),
    (["--size", "big"], ["size", "WxH"]),
    (["--steps", "500"], ["steps", "100"]),
    (["--steps", "0"], ["steps", "1"]),
    (["--engine", "nope"], ["nope", "studio", "diffusion"]),
    (["-n", "0"], ["-n", "50"]),
    (["--quality", "101"], ["quality", "100"]),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path: Path, capsys, argv: list[str], words: list[str]) -> None:
    err = run_error(["generate", "paper", "-o", str(tmp_path / "x.png"), *argv], capsys)
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "x.png").exists()


def test_unknown_config_file(tmp_path: Path, capsys) -> None:
    err = run_error(["--config", str(tmp_path / "missing.toml"), "generate", "paper",
                     "-o", str(tmp_path / "x.png")], capsys)
    assert "missing.toml" in err and "does not exist" in err


def test_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "p.avif"
    ok = subprocess.run([sys.executable, "-m", "swiftshot", "generate", "sage green paper sweep",
                         "--seed", "1", "-o", str(out)], capture_output=True, text=True, env=env,
                        timeout=120, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    with Image.open(out) as img:
        assert img.format == "AVIF" and img.size == (1024, 1024)
    bad = subprocess.run([sys.executable, "-m", "swiftshot", "generate", "paper", "-o", "x.gif"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("swiftshot: error: unsupported output format")
    assert "Traceback" not in bad.stderr
