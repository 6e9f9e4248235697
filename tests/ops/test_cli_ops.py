"""swiftshot cutout / render / check: files in, files out, exit codes and one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from swiftshot.cli import main
from swiftshot.testing.products import make_photo


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "bottle.jpg"
    make_photo("bottle_white_sweep", (600, 600)).image.save(path, quality=92)
    return path


def test_cutout_writes_transparent_png(photo_path, tmp_path, capsys):
    out = tmp_path / "cut.png"
    assert main(["cutout", str(photo_path), "-o", str(out)]) == 0
    im = Image.open(out)
    assert im.mode == "RGBA" and im.size == (600, 600)
    a = np.asarray(im)[..., 3]
    assert a[5, 5] == 0 and a[300, 300] == 255
    out_text = capsys.readouterr().out
    assert "segmenter=classical" in out_text and "confidence=" in out_text


def test_render_amazon_then_check_passes(photo_path, tmp_path, capsys):
    out = tmp_path / "amazon.jpg"
    assert main(["render", "--product", str(photo_path), "--preset", "amazon", "-o", str(out)]) == 0
    assert Image.open(out).size == (2000, 2000)
    capsys.readouterr()
    assert main(["check", str(out), "--preset", "amazon"]) == 0
    text = capsys.readouterr().out
    assert "PASS  background" in text and "amazon: all rules pass" in text


def test_render_strict_exits_1_when_the_preset_check_fails(photo_path, tmp_path, capsys):
    # A user preset no placement can meet (fill at least 97 % and at most 96 %).
    cfg = tmp_path / "swiftshot.toml"
    cfg.write_text('[ops.presets.tight]\nwidth = 800\nheight = 800\nbackground = [255, 255, 255]\n'
                   'fill = 0.8\nmin_fill = 0.97\nmax_fill = 0.96\nformat = "jpeg"\n')
    out = tmp_path / "tight.jpg"
    argv = ["--config", str(cfg), "render", "--product", str(photo_path), "--preset", "tight",
            "-o", str(out)]
    assert main(argv) == 0  # written, and said
    captured = capsys.readouterr()
    assert "compliance=FAIL" in captured.out and "FAIL  product_fill" in captured.err
    assert main([*argv, "--strict"]) == 1
    assert out.exists()
    assert main(["render", "--product", str(photo_path), "--preset", "amazon", "--strict",
                 "-o", str(tmp_path / "ok.jpg")]) == 0
    assert "compliance=pass" in capsys.readouterr().out


def test_check_fails_with_exit_1_and_names_rules(photo_path, capsys):
    assert main(["check", str(photo_path), "--preset", "amazon"]) == 1
    text = capsys.readouterr().out
    assert "FAIL  background" in text and "FAIL  product_fill" in text
    assert "(required: >= 85%)" in text


def test_render_with_backdrop_prompt_and_ops(photo_path, tmp_path):
    out = tmp_path / "studio.png"
    assert main(["render", "--product", str(photo_path), "--backdrop", "white paper sweep",
                 "--size", "512x512", "-o", str(out)]) == 0
    assert Image.open(out).size == (512, 512)
    out2 = tmp_path / "ops.webp"
    ops = '[{"op":"cutout"},{"op":"compose","backdrop":"color","color":"#202020","fill":0.5}]'
    assert main(["render", "--product", str(photo_path), "--ops", ops, "--size", "256x256",
                 "-o", str(out2)]) == 0
    assert Image.open(out2).convert("RGB").getpixel((2, 2))[0] < 40


@pytest.mark.parametrize("argv, words", [
    (["cutout", "/nonexistent.jpg", "-o", "x.png"], "does not exist"),
    (["render", "--product", "PHOTO", "--ops", "[{\"op\":\"nope\"}]", "-o", "OUT.png"],
     "unknown op 'nope'"),
    (["render", "--product", "PHOTO", "--ops", "{not json", "-o", "OUT.png"], "not valid JSON"),
    (["check", "PHOTO", "--preset", "ebay"], "unknown preset 'ebay'"),
    (["cutout", "GIF", "-o", "OUT.png"], "GIF images are not accepted"),
])
def test_user_errors_are_one_line_exit_2(photo_path, tmp_path, capsys, argv, words):
    gif = tmp_path / "a.gif"
    Image.new("RGB", (8, 8)).save(gif)
    argv = [str(photo_path) if a == "PHOTO" else str(tmp_path / "out.png") if a == "OUT.png"
            else str(gif) if a == "GIF" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.count("\n") == 0 and err.startswith("swiftshot: error:")


def test_render_ghost_mannequin_with_file_references(tmp_path):
    from swiftshot.testing.products import make_mannequin_photo

    m = make_mannequin_photo()
    front, inside, out = tmp_path / "front.png", tmp_path / "inside.png", tmp_path / "ghost.png"
    m.image.save(front)
    Image.new("RGB", (80, 50), (180, 20, 20)).save(inside)
    import json

    ops = json.dumps([{"op": "mannequin", "key_color": "#d6bc9c", "inside_sha256": f"@{inside}"}])
    assert main(["render", "--product", str(front), "--ops", ops, "-o", str(out)]) == 0
    arr = np.asarray(Image.open(out))
    assert arr.shape[2] == 4
    red = arr[m.opening][:, :3].astype(int)               # the inside photo fills the opening
    assert ((red[:, 0] > 110) & (red[:, 0] > 3 * red[:, 1])).mean() > 0.8  # (in shade)
    assert (arr[m.mannequin & ~m.opening][:, 3] < 128).mean() > 0.8


def test_cutout_says_low_confidence_on_a_box_it_cuts_too_tight(tmp_path, capsys):
    # Tuning case textured 7010 (a brown box on brown wood, IoU 0.95: the top face's edge is
    # lost) is said `low` with its reason. (Until the tenth pass this test used a tinted glass
    # bottle whose dark walls the matte gave back; that one is cut right now.)
    from swiftshot.testing.products import eval_cases

    path = tmp_path / "box.png"
    make_photo(eval_cases((7010,), ("textured",))[0], (640, 640)).image.save(path)
    assert main(["cutout", str(path), "-o", str(tmp_path / "cut.png")]) == 0
    captured = capsys.readouterr()
    assert "(low)" in captured.out
    assert "low confidence:" in captured.err and "same colour" in captured.err
