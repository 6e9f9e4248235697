"""``swiftshot batch DIR -o OUTDIR --preset amazon``: a folder of product photos, locally.

Every JPEG/PNG/WebP/AVIF in DIR goes through the pipeline (engine + product operations +
preset) and is encoded into OUTDIR; no server is needed. Re-running resumes: an output is
written under a temporary name and renamed into place only when complete, and a manifest in
OUTDIR (``.swiftshot-batch.json``) records, per input, its content hash, the settings it was
made with and the output's size. An input whose manifest entry still matches is skipped.
Failures (a corrupt photo, say) are listed at the end and do not stop the others; the exit
status is 1 when any input failed, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from swiftshot.cli import CliError, load_cli_settings

INPUT_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".avif")
MANIFEST = ".swiftshot-batch.json"
FORMATS = ("jpeg", "png", "webp", "avif")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="process a folder of product photos (resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input_dir", metavar="DIR", help="folder of JPEG/PNG/WebP/AVIF photos")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for the results and the resume manifest (created if missing)")
    p.add_argument("--preset", default=None, help="marketplace preset, e.g. amazon, shopify")
    p.add_argument("--format", default="jpeg", help="jpeg (default), png, webp or avif")
    p.add_argument("--quality", type=int, default=None, help="1-100 for jpeg/webp/avif")
    p.add_argument("--size", default=None, help="WxH of the output (default: the preset's)")
    p.add_argument("--prompt", default="", help="backdrop prompt, when the preset composes one")
    p.add_argument("--engine", default=None, help="engine for backdrops (default: settings)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes (default: cores, at most 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


@dataclass
class Outcome:
    name: str
    status: str  # done | skipped | failed
    output: str | None = None
    error: str | None = None
    quality: dict | None = None
    """The preset's compliance and the cutout's confidence (``ops.presets.quality_of``)."""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


class Manifest:
    """OUTDIR's record of finished inputs; rewritten atomically after each one."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / MANIFEST
        self._lock = threading.Lock()
        self.items: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = orjson.loads(self.path.read_bytes())
                self.items = dict(data.get("items", {}))
            except (orjson.JSONDecodeError, AttributeError, TypeError):
                self.items = {}  # a damaged manifest only costs redoing the work

    def is_done(self, name: str, sha: str, params: str, outdir: Path) -> bool:
        e = self.items.get(name)
        if not e or e.get("status") != "done" or e.get("sha256") != sha or e.get("params") != params:
            return False
        out = outdir / e["output"]
        return out.is_file() and out.stat().st_size == e.get("bytes")

    def record(self, name: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self.items[name] = entry
            _atomic_write(self.path, orjson.dumps({"version": 1, "items": self.items},
                                                   option=orjson.OPT_INDENT_2))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def find_inputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES and not p.name.startswith("."))


def output_names(inputs: Iterable[Path], ext: str) -> dict[Path, str]:
    """``photo.jpg`` → ``photo.<ext>``; inputs sharing a stem keep their suffix in the name."""
    inputs = list(inputs)
    stems: dict[str, int] = {}
    for p in inputs:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    return {p: (f"{p.stem}.{ext}" if stems[p.stem] == 1
                else f"{p.stem}-{p.suffix.lstrip('.').lower()}.{ext}") for p in inputs}


class _LazyEngine:
    """Loads the engine on its first ``run``: a preset that only cuts out and places the
    product never needs a backdrop, and loading the studio engine costs over a second."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._loaded = False
        self.name, self.version = engine.name, engine.version

    def load(self) -> None:
        with self._lock:
            if not self._loaded:
                self._engine.load()
                self._loaded = True

    def warmup(self, shapes: Any) -> None:
        self.load()
        self._engine.warmup(shapes)

    def batch_key(self, spec: Any) -> Any:
        return self._engine.batch_key(spec)

    def run(self, specs: Any, on_step: Any = None) -> Any:
        self.load()
        return self._engine.run(specs, on_step)


class FolderJob:
    """The work of one ``swiftshot batch`` run (also driven by the jobs benchmark)."""

    def __init__(self, input_dir: Path, outdir: Path, settings: Any, *, preset: str | None,
                 fmt: str = "jpeg", quality: int | None = None, size: str | None = None,
                 prompt: str = "", engine_name: str | None = None, workers: int = 1) -> None:
        from swiftshot.delivery.codecs import extension, normalize_format
        from swiftshot.engines import create_engine
        from swiftshot.pipeline import OPS_VERSION

        self.input_dir, self.outdir, self.settings = input_dir, outdir, settings
        self.fmt = normalize_format(fmt)
        self.ext = extension(self.fmt)
        self.quality, self.workers = quality, max(1, workers)
        self.base: dict[str, Any] = {"prompt": prompt, "preset": preset,
                                     "output_format": self.fmt, "quality": quality,
                                     "engine": engine_name or settings.engine.default}
        if size:
            self.base["size"] = size
        self.base = {k: v for k, v in self.base.items() if v is not None}
        self._check_spec()
        engine_version = create_engine(self.base["engine"], settings).version
        self.params = hashlib.sha256(orjson.dumps(
            {**self.base, "engine_version": engine_version, "ops": OPS_VERSION},
            option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
        self.renderer = Renderer(settings, self.base, self.fmt, quality, outdir)

    def _check_spec(self) -> None:
        from swiftshot import pipeline
        from swiftshot.ops.presets import get_preset
        from swiftshot.spec import RenderSpec

        RenderSpec(**self.base, product_sha256="0" * 64)  # bad --size/--quality: exit 2 now
        pipeline.configure(self.settings.ops)  # user presets, segmenter, model folder
        if "preset" in self.base:
            try:
                get_preset(self.base["preset"], self.settings.ops.presets)
            except ValueError as e:
                raise CliError(str(e)) from None

    def run(self, on_progress: Callable[[Outcome], None] | None = None) -> Report:
        self.outdir.mkdir(parents=True, exist_ok=True)
        inputs = find_inputs(self.input_dir)
        names = output_names(inputs, self.ext)
        manifest = Manifest(self.outdir)
        report = Report()
        todo: list[Path] = []
        for path in inputs:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if manifest.is_done(path.name, sha, self.params, self.outdir):
                outcome = Outcome(path.name, "skipped", manifest.items[path.name]["output"])
                report.outcomes.append(outcome)
                if on_progress:
                    on_progress(outcome)
            else:
                todo.append(path)
        queue = iter(todo)
        with self._pool(len(todo)) as pool:
            # A few submissions ahead of the workers: photos are read as they are needed and
            # every finished one is in the manifest before the next is started inline.
            pending: dict[Future[tuple[Outcome, int]], tuple[Path, str]] = {}
            ahead = 2 * self.workers if isinstance(pool, ProcessPoolExecutor) else 1

            def fill() -> None:
                while len(pending) < ahead and (path := next(queue, None)):
                    data = path.read_bytes()
                    sha = hashlib.sha256(data).hexdigest()
                    pending[pool.submit(_work, path.name, data, sha, names[path])] = (path, sha)

            fill()
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    path, sha = pending.pop(fut)
                    outcome, nbytes = fut.result()
                    entry: dict[str, Any] = {"status": outcome.status, "sha256": sha,
                                             "params": self.params, "output": outcome.output}
                    if outcome.status == "done":
                        entry["bytes"] = nbytes
                        if outcome.quality:
                            entry.update(outcome.quality)
                    else:
                        entry["error"] = outcome.error
                    manifest.record(path.name, entry)
                    report.outcomes.append(outcome)
                    if on_progress:
                        on_progress(outcome)
                fill()
        report.outcomes.sort(key=lambda o: o.name)
        return report

    def _pool(self, n: int) -> Executor:
        # Processes, not threads: the ops are numpy with much Python between the array calls,
        # so threads serialise on the GIL. Each process loads the engine only if it needs it.
        if self.workers == 1 or n <= 1:
            _init(self.renderer)
            return _InlineExecutor()
        return ProcessPoolExecutor(min(self.workers, n), initializer=_init,
                                   initargs=(self.renderer,))


class Renderer:
    """One photo → one encoded output file. Picklable: each worker process gets a copy."""

    def __init__(self, settings: Any, base: dict[str, Any], fmt: str, quality: int | None,
                 outdir: Path) -> None:
        self.settings, self.base, self.fmt, self.quality, self.outdir = (
            settings, base, fmt, quality, outdir)
        self._engine: _LazyEngine | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_engine": None}

    @property
    def engine(self) -> _LazyEngine:
        if self._engine is None:
            from swiftshot.engines import create_engine

            self._engine = _LazyEngine(create_engine(self.base["engine"], self.settings))
        return self._engine

    def one(self, name: str, data: bytes, sha: str, out_name: str) -> tuple[Outcome, int]:
        from swiftshot.engines import EngineError
        from swiftshot.inputs import InputError

        try:
            encoded, quality = self.render(data, sha)
        except InputError as e:
            return Outcome(name, "failed", error=e.message), 0
        except (EngineError, ValueError, OSError) as e:
            return Outcome(name, "failed", error=f"{type(e).__name__}: {e}"), 0
        except Exception as e:  # noqa: BLE001 - one bad photo must not stop the folder
            return Outcome(name, "failed", error=f"internal error ({type(e).__name__}: {e})"), 0
        _atomic_write(self.outdir / out_name, encoded)
        return Outcome(name, "done", out_name, quality=quality), len(encoded)

    def render(self, data: bytes, sha: str) -> tuple[bytes, dict]:
        from swiftshot.delivery.codecs import encode
        from swiftshot.inputs import load_image
        from swiftshot.pipeline import run_batch, source_type_for
        from swiftshot.spec import RenderSpec

        photo = load_image(data, self.settings.limits)
        spec = RenderSpec(**self.base, product_sha256=sha).normalized()
        (image,) = run_batch(self.engine, [spec], products={sha: photo})
        from swiftshot.ops.presets import quality_of

        return encode(image, self.fmt, self.quality, source_type=source_type_for(spec),
                      settings=self.settings.delivery), quality_of(image)


_RENDERER: Renderer | None = None


def _init(renderer: Renderer) -> None:
    from swiftshot import pipeline

    global _RENDERER
    _RENDERER = renderer
    pipeline.configure(renderer.settings.ops)


def _work(name: str, data: bytes, sha: str, out_name: str) -> tuple[Outcome, int]:
    assert _RENDERER is not None, "worker not initialised"
    return _RENDERER.one(name, data, sha, out_name)


class _InlineExecutor(Executor):
    """workers=1: run in this process (no pickling, profilers see everything)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller through the future
            fut.set_exception(e)
        return fut


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from tqdm import tqdm

    from swiftshot.cli import format_validation_error
    from swiftshot.delivery.codecs import UnsupportedFormat

    src, out = Path(args.input_dir), Path(args.output)
    if not src.is_dir():
        raise CliError(f"{str(src)!r} is not a folder; give the folder of product photos")
    if out.resolve() == src.resolve():
        raise CliError("OUTDIR must differ from DIR (outputs would be taken for inputs on re-run)")
    if out.exists() and not out.is_dir():
        raise CliError(f"-o {str(out)!r} exists and is not a folder")
    if not 1 <= args.workers <= 64:
        raise CliError(f"--workers must be between 1 and 64; got {args.workers}")
    inputs = find_inputs(src)
    if not inputs:
        raise CliError(f"no JPEG, PNG, WebP or AVIF files in {str(src)!r}")
    settings = load_cli_settings(args)
    try:
        job = FolderJob(src, out, settings, preset=args.preset, fmt=args.format,
                        quality=args.quality, size=args.size, prompt=args.prompt,
                        engine_name=args.engine, workers=args.workers)
    except UnsupportedFormat as e:
        raise CliError(str(e)) from None
    except ValidationError as e:
        raise CliError(format_validation_error(e)) from None
    bar = tqdm(total=len(inputs), unit="img", desc="batch", disable=args.no_progress)
    try:
        report = job.run(lambda o: bar.update(1))
    finally:
        bar.close()
    print(f"{report.count('done')} done, {report.count('skipped')} skipped (already done), "
          f"{len(report.failed)} failed → {out}")
    for o in report.failed:
        print(f"failed: {o.name}: {o.error}", file=sys.stderr)
    return 1 if report.failed else 0
