"""``swiftshot batch DIR -o OUT``: a folder through the local pipeline, resumable, failures listed."""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest
from PIL import Image

from swiftshot.cli import main
from swiftshot.cli.batch import MANIFEST
from swiftshot.testing.products import make_photo


def _save(img: Image.Image, path: Path, fmt: str) -> None:
    buf = io.BytesIO()
    img.save(buf, fmt)
    path.write_bytes(buf.getvalue())


@pytest.fixture
def folder(tmp_path) -> Path:
    src = tmp_path / "photos"
    src.mkdir()
    _save(make_photo("bottle_white_sweep", (192, 192)).image, src / "bottle.jpg", "JPEG")
    _save(make_photo("box_gradient", (192, 160)).image, src / "box.png", "PNG")
    _save(make_photo("mug_handle_white_sweep", (160, 192)).image, src / "mug.webp", "WEBP")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (src / "notes.txt").write_text("not an image; ignored")
    return src


def _run(src: Path, out: Path, *extra: str) -> int:
    return main(["batch", str(src), "-o", str(out), "--preset", "amazon", "--no-progress", *extra])


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".jpg"}


def test_folder_processed_failures_listed_and_rerun_resumes(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(folder, out) == 1, "one input is corrupt"
    captured = capsys.readouterr()
    assert "3 done, 0 skipped" in captured.out and "1 failed" in captured.out
    (line,) = [ln for ln in captured.err.splitlines() if ln.startswith("failed:")]
    assert line.startswith("failed: broken.jpg: ") and "corrupt" in line
    assert sorted(_mtimes(out)) == ["bottle.jpg", "box.jpg", "mug.jpg"]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], "no temp files left"
    for name in _mtimes(out):
        with Image.open(out / name) as im:
            assert im.format == "JPEG" and im.size == (2000, 2000)  # amazon's frame
    manifest = orjson.loads((out / MANIFEST).read_bytes())["items"]
    assert manifest["broken.jpg"]["status"] == "failed"
    assert {manifest[n]["status"] for n in ("bottle.jpg", "box.png", "mug.webp")} == {"done"}

    before = _mtimes(out)
    assert _run(folder, out) == 1
    assert "0 done, 3 skipped" in capsys.readouterr().out
    assert _mtimes(out) == before, "finished outputs are not rewritten"

    # A changed photo is redone; the others are still skipped. A fixed broken one succeeds.
    _save(make_photo("dark_box_hard_shadow", (192, 192)).image, folder / "box.png", "PNG")
    (folder / "broken.jpg").unlink()
    assert _run(folder, out) == 0
    after = _mtimes(out)
    assert after["box.jpg"] != before["box.jpg"]
    assert {k: after[k] for k in ("bottle.jpg", "mug.jpg")} == {
        k: before[k] for k in ("bottle.jpg", "mug.jpg")}


def test_truncated_output_is_redone(folder, tmp_path, capsys):
    out = tmp_path / "out"
    _run(folder, out)
    # An output cut short behind our back (or a crash in someone's copy) no longer matches.
    (out / "mug.jpg").write_bytes((out / "mug.jpg").read_bytes()[:100])
    _run(folder, out)
    assert "1 done, 2 skipped" in capsys.readouterr().out.splitlines()[-1]
    with Image.open(out / "mug.jpg") as im:
        im.load()


def test_other_settings_redo_the_work(folder, tmp_path, capsys):
    out = tmp_path / "out"
    for name in ("broken.jpg", "box.png", "mug.webp"):
        (folder / name).unlink()
    assert _run(folder, out, "--workers", "1") == 0
    assert _run(folder, out, "--workers", "1", "--quality", "60") == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("args,needle", [
    (["batch", "/nonexistent/dir", "-o", "x"], "is not a folder"),
    (["batch", "{src}", "-o", "{src}"], "must differ"),
    (["batch", "{src}", "-o", "{out}", "--format", "gif"], "unsupported format"),
    (["batch", "{src}", "-o", "{out}", "--size", "100x100"], "multiple of 8"),
    (["batch", "{empty}", "-o", "{out}"], "no JPEG, PNG, WebP or AVIF"),
    (["batch", "{src}", "-o", "{out}", "--preset", "ebay"], "unknown preset 'ebay'"),
])
def test_usage_errors_exit_2_with_one_line(folder, tmp_path, capsys, args, needle):
    (tmp_path / "empty").mkdir()
    subst = {"src": str(folder), "out": str(tmp_path / "o"), "empty": str(tmp_path / "empty")}
    assert main([a.format(**subst) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith("swiftshot: error:")
    assert not os.path.exists(tmp_path / "o") or not any((tmp_path / "o").iterdir())
