"""Typed settings: one section per subsystem, every knob documented where it is declared.

Sources, strongest first: keyword arguments, environment (``SWIFTSHOT_`` prefix, ``__`` between
section and field, e.g. ``SWIFTSHOT_CACHE__MEMORY_BYTES=1000000``), a TOML file named by
``SWIFTSHOT_CONFIG`` (or passed to :func:`load_settings`), then the defaults below, which run on
a laptop with no model files.

A few flat aliases that operators expect are honoured too: ``SWIFTSHOT_REDIS_URL`` sets
``cache.redis_url``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

Priority = Literal["realtime", "standard", "batch", "prefetch"]
PRIORITIES: tuple[Priority, ...] = ("realtime", "standard", "batch", "prefetch")


class _Section(BaseModel):
    model_config = {"extra": "forbid", "validate_assignment": True}


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    """Address to bind. Loopback by default; put nginx or a CDN in front for the public edge."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port (0 picks a free one; the chosen port is printed at start-up)."""
    public_url: str | None = None
    """Base URL used to build absolute image URLs in responses (e.g. https://img.shop.example).
    Unset: the request's ``Host`` if it names one of ``trusted_hosts``, else the address the
    server was reached on; never an arbitrary ``Host`` header (no cache or link poisoning)."""
    trusted_hosts: list[str] = ["127.0.0.1", "localhost", "::1"]
    """Host names (port ignored) a request's ``Host`` header may give image URLs when
    ``public_url`` is unset. Loopback by default, so nginx on the same host works as is."""
    max_body_bytes: int = Field(30 * 1024 * 1024, ge=1024)
    """Largest request body accepted; larger bodies get 413 before they are read in full."""
    drain_timeout_s: float = Field(30.0, ge=0)
    """On SIGTERM, how long in-flight work may take to finish before the process exits."""
    warmup_shapes: list[tuple[int, int]] = [(1024, 1024)]
    """Shapes (width, height) run once at start-up; /readyz answers 503 until they are done."""
    access_log: bool = False
    """Log one line per request (uvicorn's access log). Off by default: it costs on the hot path."""
    malloc_huge_pages: bool = False
    """``swiftshot serve`` on Linux with glibc ≥ 2.35: start the server with glibc's malloc on
    transparent huge pages (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``; the command re-executes
    itself once with it set, same PID; engine workers inherit it). Every miss brings a new
    ~1 MB master into the front's memory tier: on fresh 4 KB pages that copy cost ~0.47 ms of
    page faults per miss at p50 on the dev VM, on 2 MB pages ~0.08 ms — but its tail got
    worse there (p90 0.3-5 ms against 0.6, and in one micro-run in four a mean of 3 ms against
    0.9: a fresh 2 MB page, likely first touched on the VM's host too). Off by default until a
    quiet-box run shows the tail is not a cost (docs/PERFORMANCE.md, 2026-12-04, third pass).
    No effect elsewhere, or when GLIBC_TUNABLES already names it."""
    fast_hits: bool = True
    """Answer plain ``GET /i/`` memory-tier hits in a raw ASGI layer ahead of the FastAPI app
    (api/fast_path.py: same answers, metrics and side effects; everything else falls through).
    False: every request goes through the full app."""
    retry_after_s: float = Field(5.0, ge=0)
    """Retry-After sent with 503s while warming up or draining."""
    max_work: int | None = Field(None, ge=1)
    """Requests doing work past a cache hit at once (misses in queue, inference and master
    encode; variant encodes; uploads and cutouts). Past it, 503 ``overloaded`` with Retry-After
    at once, instead of an unbounded thread-pool backlog that slows every request, cache hits
    included. None: 8 per CPU core (16 on 2 cores)."""
    cpu_processes: int | None = Field(None, ge=0, le=64)
    """Processes that run the upload route's work (``POST /v1.0/removebg``: decode, cutout,
    compose, encode) outside the front, so it does not hold the front's GIL while the event
    loop serves other requests (runtime/offload.py); started with the server. 0: a thread of
    the front. None (default): 0 with the ``inline`` executor, else one per CPU core (at most
    4). At 1.5x on the 2-core VM with few neighbours (load 2.6-7.4) the realtime ratio was
    2.54 with it against 5.54 and 4.61 without (front CPU 0.34 vs 0.65-0.77 of a core); on
    the crowded box (load 16-38) it was worse in two pairs (docs/PERFORMANCE.md, "Realtime
    isolation: the upload route off the front, lower-class renders below it")."""
    cpu_nice: int = Field(0, ge=0, le=19)
    """Niceness added to the ``cpu_processes`` (the upload route's decode, cutout, compose and
    encode), as ``engine.lower_class_nice`` lowers the other classes' renders: when the cores
    are short, the front's loop and a realtime render in an engine worker run before an
    upload's cutout. The processes are shared by every class, so a realtime upload runs lowered
    too. Default 0 (the front's own priority): on the quiet 2-core AMD EPYC (2026-12-06,
    15:50-16:04 UTC) 5 gave no measurable gain in the realtime ratio at 1.5x (1.53, 1.75, 1.29
    against 1.00, 1.53 at 0) while the uploads' p95 under load rose from 110-135 to 181-186 ms
    (docs/PERFORMANCE.md, "The goals at the end of the seventeenth session")."""
    realtime_reserve: float = Field(0.25, ge=0, lt=1)
    """Share of ``max_work`` only realtime requests may use (at least one place when > 0)."""
    shed_lag_ms: float | None = Field(None, gt=0)
    """Event-loop lag (a moving average of how late the front runs a 20-ms timer) past which
    the work gate refuses new batch and prefetch work past the cache, and past twice it standard
    work too (503 ``overloaded`` with Retry-After), so that a front short of CPU keeps it for
    realtime requests (runtime/gate.py). Realtime work and cache hits are never refused for
    lag. None (the default): off — the lag also rises when *other* processes take the CPU, and
    on the shared 2-core dev VM (load 40) 10 ms refused half of a closed loop of 8 standard
    misses that the box could serve; set it on a machine of its own, to a few times the lag
    ``swiftshot_event_loop_lag_seconds`` shows at a load you want fully served."""
    overload_retry_after_s: float = Field(1.0, ge=0)
    """Retry-After sent with 503 ``overloaded`` (the work gate) and ``deadline`` refusals."""
    sse_keepalive_s: float = Field(5.0, gt=0)
    """A streamed render (SSE) sends a ``: keep-alive`` comment after this many idle seconds."""


class CacheSettings(_Section):
    memory_bytes: int = Field(256 * 1024 * 1024, ge=0)
    """Byte budget of the in-process LRU tier (0 disables it)."""
    disk_dir: Path | None = Path("var/cache")
    """Folder of the disk tier (diskcache); survives restarts. None disables the tier."""
    disk_bytes: int = Field(4 * 1024**3, ge=0)
    """Byte budget of the disk tier; least recently used entries are culled past it."""
    redis_url: str | None = None
    """Redis URL of the shared tier (e.g. redis://127.0.0.1:6379/0). None disables it."""
    ttl_s: dict[str, int] = {"preview": 3600, "adhoc": 7 * 86400, "catalog": 365 * 86400}
    """Time to live per category, in seconds. A request names its category; adhoc by default."""
    default_category: str = "adhoc"
    """Category used when a request names none."""
    redis_prefix: str = "swiftshot:"
    """Prefix of every key swiftshot writes to Redis, so several deployments can share one."""
    redis_timeout_s: float = Field(0.25, gt=0, le=10)
    """Connect and read timeout of Redis calls; a Redis slower than this reads as a miss."""
    redis_retry_s: float = Field(2.0, ge=0)
    """After a Redis failure the tier answers misses for this long before it tries again."""
    promote_ttl_s: float = Field(3600.0, gt=0)
    """Longest a copy promoted from a lower tier into a faster one lives there."""

    @model_validator(mode="after")
    def _default_category_known(self) -> CacheSettings:
        if self.default_category not in self.ttl_s:
            raise ValueError(
                f"cache.default_category {self.default_category!r} is not one of "
                f"cache.ttl_s's categories {sorted(self.ttl_s)}"
            )
        return self


class SchedulerSettings(_Section):
    max_batch_size: int = Field(8, ge=1, le=50)
    """Most requests that share one engine call (same batch_key)."""
    max_wait_ms: float = Field(5.0, ge=0)
    """Longest a request waits for others to fill its batch once the engine is free."""
    queue_limit: dict[Priority, int] = {"realtime": 64, "standard": 256, "batch": 2048, "prefetch": 512}
    """Bounded queue length per priority class; past it requests are refused with 429/503."""
    deadline_ms: dict[Priority, int] = {
        "realtime": 2_000,
        "standard": 10_000,
        "batch": 600_000,
        "prefetch": 60_000,
    }
    """Default deadline per class; a request whose estimated wait passes it is refused at once."""
    aging_ms: float = Field(2_000.0, gt=0)
    """A waiting request climbs one priority class per this many milliseconds (no starvation)."""
    service_time_hint_s: float = Field(0.05, gt=0)
    """Engine seconds per request assumed by admission control until batches are measured."""
    realtime_slots: int = Field(1, ge=0, le=64)
    """Executor slots (engine workers, replicas) kept for realtime work: batches with no
    realtime request run on at most ``slots - realtime_slots`` of them at once (never fewer
    than one), so a realtime miss finds a worker free instead of waiting behind a running
    standard/batch item, and the other classes' engine work leaves CPU to the front. 0: every
    slot is shared (the best queued item takes the next free slot, whatever its class). No
    effect with one slot (``inline``, one worker). Admission and Retry-After count the other
    classes' wait on the slots they may use."""
    lend_reserved_after_s: float | None = Field(10.0, ge=0)
    """Until the first realtime request reaches the engine queue, and again after this many
    seconds without one, the other classes may use the reserved slots too (a server with no
    realtime traffic, e.g. a night of batch jobs or a throughput benchmark, keeps its full
    throughput); the next realtime arrival ends the loan (it then waits for at most the first
    running item to end). None: never lend (the reserve is held from the start)."""

    @model_validator(mode="after")
    def _every_class_configured(self) -> SchedulerSettings:
        for name in ("queue_limit", "deadline_ms"):
            table = getattr(self, name)
            missing = [p for p in PRIORITIES if p not in table]
            if missing:
                raise ValueError(f"scheduler.{name} must name every priority class "
                                 f"{list(PRIORITIES)}; missing {missing}")
            bad = {p: v for p, v in table.items() if v <= 0}
            if bad:
                raise ValueError(f"scheduler.{name} values must be > 0; got {bad}")
        return self


class StudioSettings(_Section):
    grain: float = Field(1.0, ge=0, le=4)
    """Global multiplier on film grain (0 turns it off)."""


class DiffusionSettings(_Section):
    model: str | None = None
    """Local folder of a diffusers pipeline, or a repo id found in the offline Hugging Face cache."""
    device: str = "auto"
    """torch device: auto (cuda if present, else cpu), cpu, cuda, cuda:1 ..."""
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: fp16 on CUDA, bf16 on a CPU that has it, else fp32."""
    tiny_vae: str | None = None
    """Folder of an AutoencoderTiny (TAESD) used to decode; None keeps the pipeline's VAE."""
    tiny_vae_final: bool = True
    """With tiny_vae set: decode final images with it too (about 1/20 the decode time of the
    full VAE, slightly softer). False keeps it for step previews only."""
    vae_dtype: Literal["auto", "same", "fp32"] = "auto"
    """dtype of the VAE / tiny VAE. same (and auto): the pipeline's dtype. fp32: decode (and
    encode) in fp32 under a bf16/fp16 pipeline, for fidelity; on the 2-core CPU measured it was
    not faster than bf16 (docs/PERFORMANCE.md), so auto does not pick it."""
    int8: bool = False
    """Dynamic int8 quantisation of the UNet/transformer linear layers."""
    compile: bool = False
    """torch.compile the denoiser (worth it on GPU for long-running servers; torch backend
    only). It compiles at the first render of each shape: the warm-up pays it, and
    `swiftshot engines` / the engine's load report show warmup_s."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    """torch.compile mode: reduce-overhead records CUDA graphs (on CUDA; one per batch shape)."""
    channels_last: bool = True
    """channels-last memory format on CUDA."""
    default_steps: int = Field(1, ge=1, le=100)
    """Steps when a request names none (turbo/schnell models are distilled for 1-4)."""
    default_guidance: float = Field(0.0, ge=0, le=30)
    """Guidance scale when a request names none (0 for turbo models)."""
    backend: Literal["auto", "torch", "openvino"] = "auto"
    """What runs the UNet, text encoder(s) and decoder. torch: PyTorch (any device; compile,
    int8 via torchao). openvino: OpenVINO on the CPU (converted from the local folder at first
    load, cached under openvino_dir; bf16 where the CPU has it; int8 = NNCF 8-bit weights).
    auto: torch on CUDA, with compile set, or where OpenVINO cannot run the model; else (a CPU
    with OpenVINO and an SD 1/2 / SDXL pipeline) a start-up probe: the first load times both
    backends on the model's shape (probe_s) and keeps the one with fewer CPU-seconds per
    render, cached under openvino_dir/probe keyed by model, settings, machine and versions.
    `swiftshot engines` says which one runs and why (the figures measured)."""
    quantize: Literal["none", "int8"] = "none"
    """OpenVINO backend: int8 = post-training int8 quantisation of the UNet (NNCF, weights and
    activations, calibrated at first load on quantize_samples renders of random prompts at the
    model's default size; cached beside the IR). On a CPU with VNNI about a quarter fewer
    CPU-seconds per UNet call than bf16 (docs/PERFORMANCE.md); pixels move more than with
    int8 (8-bit weights only)."""
    quantize_samples: int = Field(8, ge=1, le=256)
    """Calibration renders for quantize int8 (one UNet input each per step)."""
    probe_s: float = Field(20.0, ge=0)
    """backend auto: seconds of timed renders per backend in the start-up probe (after its load
    and one warm-up render; at least one timed render, at most three)."""
    openvino_dir: Path | None = None
    """Converted OpenVINO models (IR keyed by the weights' fingerprint and settings) and
    OpenVINO's compiled-model cache. None: <data_dir>/openvino."""
    prompt_cache_bytes: int = Field(64 << 20, ge=0)
    """Bytes of text-encoder outputs kept in memory by (model, prompt, negative prompt), so a
    repeated prompt with a new seed skips the text encoder (SD 2.1: ~0.3 MB a prompt). 0: off."""


class FakeEngineSettings(_Section):
    """Test-only: the in-memory fake engine, chosen with ``SWIFTSHOT_ENGINE__DEFAULT=fake``.

    Lets tests start a real server whose inference is slow or fails on demand; never use it to
    serve images (it paints flat colours)."""

    delay_s: float = Field(0.0, ge=0)
    """Seconds each engine call sleeps."""
    per_item_s: float = Field(0.0, ge=0)
    """Extra seconds per spec in the call."""
    steps: int = Field(1, ge=1)
    """Steps the delay is split into (cancellation is checked between them)."""
    warmup_s: float = Field(0.0, ge=0)
    """Seconds warm-up takes (keeps /readyz at 503 that long)."""
    fail_prompt: str | None = None
    """A batch holding a spec whose prompt contains this text fails with an EngineError."""
    load_error: str | None = None
    """Loading the engine fails with this message (a model that cannot load)."""
    load_error_file: Path | None = None
    """Loading the engine fails while this file exists, with its text as the message (a model
    that cannot load for a while: tests of the bounded load retries)."""
    crash_prompt: str | None = None
    """A batch holding a spec whose prompt contains this text kills the process running the
    engine outright (``os._exit``, like a segfault): tests of a worker/replica that crashes on
    one input. Never with the ``inline`` executor (it would end the server)."""


class EngineSettings(_Section):
    default: str = "studio"
    """Engine used when a request names none."""
    executor: Literal["inline", "process", "ray"] = "inline"
    """What runs the engines (runtime/executor.py): ``inline`` (a thread of the server process;
    tests and the CLI), ``process`` (engine worker processes on this machine; ``swiftshot
    serve``'s default) or ``ray`` (Ray Serve replicas)."""
    workers: int | None = Field(None, ge=1, le=64)
    """Worker processes per engine (``process``). None: one per GPU, else one per CPU core.
    With ``ray``: replicas per engine, a fixed count (min = max, no autoscaling); None: from
    ``ray.min_replicas``/``max_replicas``."""
    load_retries: int = Field(3, ge=0, le=10)
    """A worker whose engine fails to load (``process``, ``inline``) tries again this many times,
    waiting ``load_backoff_s``, then twice that, ... between tries (1 s, 2 s, 4 s), while
    ``/readyz`` says it is not ready and why; after the last try it stays failed with the
    reason (never a restart loop). ``ray``: Serve retries a failing replica constructor
    ``min(max_constructor_retry_count, 3 × replicas)`` times."""
    load_backoff_s: float = Field(1.0, ge=0, le=60)
    """Wait before the first load retry; doubled before each next one."""
    batch_timeout_s: float = Field(300.0, gt=0)
    """A batch running longer than this in a worker process has its worker killed and
    restarted (its requests get the retry-once / 503 of a lost worker): nothing hangs."""
    worker_variants: bool = True
    """Out of process: the worker also encodes the request's own output format (WebP, AVIF ...)
    beside the master, so a miss's delivery encode does not run on the front's one core."""
    result_shm_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """``process``: each worker's shared-memory segment for result bytes (masters, variants),
    so they do not cross its pipe (runtime/shm.py). An upper bound of address space, committed
    only as far as results reach; a result that does not fit goes over the pipe. 0: off."""
    worker_cv2_threads: int = Field(1, ge=0, le=256)
    """``process``: OpenCV's thread count in each engine worker while it runs a batch without
    a product photo (a plain backdrop render and its encodes); 0: OpenCV's default (one per
    core). A batch with a product photo (cutout, compose ...) runs with the default. Default 1:
    the workers are already one per core, and OpenCV's pool thread woke ~50 times per 512²
    miss (0.5 ms CPU) and, spinning between its jobs, took a core from the worker's own
    encode: at load 27, miss p50 22.9-23.7 → 21.0-21.6 ms, the WebP encode 9.3-10.2 → 6.4-6.6
    ms, worker CPU 17.3-18.1 → 16.1-17.4 ms a miss (docs/PERFORMANCE.md, "Issue 8, twelfth
    session")."""
    worker_nice: int = Field(0, ge=0, le=19)
    """Niceness added to each engine worker process (``process``), so that when the CPU is
    short the front (cache hits, admission, dispatch) runs before the workers' renders. Off by
    default: on the shared 2-core dev VM, +5 made realtime p95 under load worse (ratio 2.7 and
    3.8 against 1.45 and 1.43 at 0, alternated runs, docs/PERFORMANCE.md). Not because other
    tenants starve the workers (nice weighs threads only within one Linux autogroup, so it
    takes no CPU from other sessions) but, likelier, because it also slows realtime renders:
    ``lower_class_nice`` lowers only the other classes' renders."""
    lower_class_nice: int = Field(5, ge=0, le=19)
    """``process`` and ``ray``: niceness added, in each engine worker (or replica), to the
    thread that runs batches
    holding no realtime item (standard, batch, prefetch work); a batch with a realtime item
    runs at the worker's own priority (``worker_nice``). So when the CPU is short, the front's
    event loop (where a slow realtime answer spends its time, docs/ARCHITECTURE.md "Realtime
    isolation under overload") and a realtime render get the cores before lower-class
    renders, without slowing realtime renders as ``worker_nice`` does. Nice weighs threads
    only within one Linux autogroup (a session): it shares the server's own CPU out, it takes
    none from other sessions. 0: off. Default 5 from alternated A/B runs (docs/PERFORMANCE.md,
    "Realtime isolation: the upload route off the front, lower-class renders below it")."""
    serve: list[str] = []
    """Engines one server offers, e.g. ``["studio", "diffusion=./models/sd-turbo"]``
    (``NAME`` or ``NAME=MODEL``); empty: just ``default``. The first is the default."""
    studio: StudioSettings = StudioSettings()
    diffusion: DiffusionSettings = DiffusionSettings()
    fake: FakeEngineSettings = FakeEngineSettings()


class DeliverySettings(_Section):
    quality: dict[str, int] = {"jpeg": 85, "webp": 80, "avif": 55}
    """Default quality per lossy format (1-100)."""
    avif_speed: int = Field(9, ge=0, le=10)
    """libavif encoder speed: 10 fastest. 9: on a 1024² studio render speed 8 took 2.6x the time
    (49 vs 19 ms on 2 cores) for 9% fewer bytes and 6-7 took 6-9x; 9 and 10 write identical
    bytes with this libaom (bench_codecs in swiftshot/benchmarks/studio.py, docs/STUDIO.md)."""
    webp_method: int = Field(2, ge=0, le=6)
    """libwebp method: 0 fastest, 6 smallest. 2 is the knee: 1→2 took 30 vs 19 ms for 23% fewer
    bytes, 2→3 took 3x the time for 3% (bench_codecs, docs/STUDIO.md)."""
    master_format: Literal["raw", "png", "webp"] = "raw"
    """Lossless format in which the master render is kept in the cache. raw (13-byte header +
    pixels): encode + decode 2 ms at 1024² against 116 ms for PNG level 1, for 2.6x the bytes
    (bench_codecs in swiftshot/benchmarks/studio.py); decode_master reads all three."""
    jpeg_progressive: bool = False
    """Progressive JPEG. Off: on a 1024² render it took ~4x the time of baseline with optimised
    Huffman tables (21 vs 10 ms) to save another ~2% of bytes; JPEG is only the fallback."""
    png_compress_level: int = Field(1, ge=0, le=9)
    """zlib level of delivered PNGs: 1 is several times faster than 6 for a few % more bytes."""
    embed_icc: bool = False
    """Embed a 588-byte sRGB ICC profile in JPEG/WebP/AVIF. Off: untagged images are read as
    sRGB by browsers anyway, and the bytes matter on thumbnails. PNG always gets an sRGB chunk."""


class AuthSettings(_Section):
    api_keys_file: Path | None = None
    """TOML/JSON file mapping API key → {tenant, tier, rate_per_s, burst}. None: no auth."""
    anonymous_tier: Priority = "standard"
    """Priority tier of requests without a key when auth is off."""
    default_rate_per_s: float = Field(10.0, gt=0)
    """Requests per second of a key whose entry names no rate_per_s."""
    default_burst: int = Field(20, ge=1)
    """Token-bucket size of a key whose entry names no burst."""
    metrics_open: bool = False
    """With auth on, let ``GET /metrics`` be read without a key (a scraper on a private network).
    Off: /metrics needs a valid key like every other non-public route."""


class LimitsSettings(_Section):
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1)
    """Largest product image accepted (bytes, encoded)."""
    max_pixels: int = Field(50_000_000, ge=1)
    """Largest product image accepted (width × height), checked before pixels are decoded."""
    max_batch_items: int = Field(50, ge=1, le=50)
    """Most items in one batch job."""
    max_n: int = Field(10, ge=1, le=50)
    """Most images in one generations request."""
    url_fetch_allowlist: list[str] = []
    """Hosts product images may be fetched from by URL. Empty: URL inputs are refused."""
    max_work_side: int = Field(3072, ge=256, le=16384)
    """Uploaded photos are worked on at most this many pixels on their longer side: a larger
    JPEG is decoded at reduced scale (libjpeg's DCT scaling), others are reduced right after
    decoding, so working copies are sized to what any output (at most 2048, or a preset's
    canvas) can use."""
    memory_budget_bytes: int = Field(1024 * 1024 * 1024, ge=0)
    """Bytes of decoded photos (and their working copies, estimated from the header before
    decoding) that requests may hold at once. Past it a request waits its turn, then gets 503
    ``memory_busy`` with Retry-After. 0: no budget."""
    memory_wait_s: float = Field(30.0, ge=0)
    """Longest a request waits for the memory budget (its deadline, if sooner)."""


class PresetRule(_Section):
    """A marketplace's image rules: what ``preset`` makes and what ``swiftshot check`` checks."""

    width: int = Field(2000, ge=64, le=8192)
    """Canvas width the preset renders (pixels)."""
    height: int = Field(2000, ge=64, le=8192)
    """Canvas height the preset renders (pixels)."""
    background: tuple[int, int, int] | None = (255, 255, 255)
    """Background colour behind the product; None keeps the backdrop the ops made."""
    fill: float = Field(0.85, gt=0, le=1)
    """Fraction of the canvas the product's bounding box fills (on its limiting side)."""
    min_fill: float | None = Field(None, gt=0, le=1)
    """Checked: the product's bounding box covers at least this fraction of the frame's side."""
    max_fill: float | None = Field(None, gt=0, le=1)
    """Checked: ... and at most this fraction (Google: 75-90%)."""
    min_long_side: int = Field(0, ge=0)
    """Checked: the image's longer side is at least this many pixels."""
    exact_size: bool = False
    """Checked: the image is exactly width × height."""
    exact_background: bool = False
    """Checked: the frame's border is exactly the background colour (Amazon's pure white)."""
    light_background: bool = False
    """Checked: the frame's border is light (mean luminance ≥ 220)."""
    format: Literal["jpeg", "png", "webp", "avif"] = "jpeg"
    """File format the preset delivers (checked when the file's format is known)."""
    quality: int = Field(92, ge=1, le=100)
    """Lossy quality the preset delivers at."""
    source_type: bool = False
    """Checked: the file carries IPTC DigitalSourceType metadata (XMP)."""
    shadow: bool = True
    """Add a contact and cast shadow when the preset places a cutout on its background."""


class OpsSettings(_Section):
    segmenter: str = "classical"
    """Default cutout segmenter: classical (no weights) or a rembg model name (u2net,
    isnet-general-use, birefnet-general ...) whose NAME.onnx is in model_dir."""
    model_dir: Path | None = None
    """Local folder holding ONNX segmentation models. Never downloaded."""
    presets: dict[str, PresetRule] = {}
    """User-defined presets (name → rules), beside the built-in amazon, shopify, etsy and
    google-merchant. A user preset with a built-in's name replaces it."""


class TelemetrySettings(_Section):
    otel_exporter: Literal["none", "console", "otlp", "memory"] = "none"
    """Where OpenTelemetry spans go. otlp uses the standard OTEL_EXPORTER_OTLP_* variables."""
    service_name: str = "swiftshot"
    """service.name resource attribute of spans."""


class JobsSettings(_Section):
    db_path: Path = Path("var/jobs.sqlite3")
    """SQLite file (WAL) holding batch jobs; accepted items survive a crash."""
    webhook_secret: str | None = None
    """HMAC-SHA256 key used to sign webhook bodies (X-Swiftshot-Signature)."""
    webhook_retries: int = Field(5, ge=0, le=20)
    """Delivery attempts for a webhook, with exponential backoff."""
    webhook_backoff_s: float = Field(2.0, gt=0)
    """Wait before the first webhook retry; doubles after each failed attempt."""
    webhook_timeout_s: float = Field(10.0, gt=0)
    """How long one webhook POST may take before it counts as failed."""
    webhook_allow_private: bool = False
    """Allow webhook URLs on loopback/private/link-local addresses (tests, single-host setups).
    Off by default so a job cannot make the server call into its own network."""
    enabled: bool = True
    """Run the job runner inside ``swiftshot serve`` (off: jobs are accepted, not rendered)."""
    concurrency: int = Field(4, ge=1, le=64)
    """Items of batch jobs rendering at once. They run at priority ``batch``, so interactive
    requests still go first; this only bounds how much of the queue jobs may occupy."""
    lease_s: float = Field(60.0, gt=0)
    """An item claimed by a process that stops renewing it is re-queued after this long."""
    max_attempts: int = Field(3, ge=1, le=20)
    """Renders of one item that may crash or error transiently before it is marked failed."""
    retry_backoff_s: float = Field(1.0, gt=0)
    """First wait before re-trying an item the service refused (overload); doubles, capped at
    a minute. Refusals do not count as attempts."""
    poll_s: float = Field(1.0, gt=0)
    """How often an idle runner looks for due work (it is also woken at once by new jobs)."""
    retention_days: float = Field(30.0, gt=0)
    """Finished jobs (their status and result keys) are deleted this long after they end."""


class PrefetchSettings(_Section):
    """Predictive prefetch (``swiftshot.prefetch``): likely variants encoded after a render,
    ``POST /v1/prefetch`` jobs, and the memory tier warmed at start-up. All of it runs at the
    ``prefetch`` priority, only with capacity to spare."""

    enabled: bool = True
    """Encode the likely variants of each new render when idle (off: only jobs and warm-up)."""
    half_life_s: float = Field(600.0, gt=0)
    """Delivery profiles (format, Client Hints) seen longer ago weigh half as much per this."""
    max_variants: int = Field(3, ge=0, le=16)
    """Most variants encoded ahead per render (the most frequent profiles)."""
    coverage: float = Field(0.9, gt=0, le=1)
    """Stop adding profiles once they cover this share of recent delivery requests."""
    idle_gate: int = Field(0, ge=0)
    """Idle means: nothing above prefetch queued for the engine, and at most this many other
    requests doing work past the cache (the work gate)."""
    idle_engine: bool = True
    """... and no batch in the engine (on 2 cores an encode beside inference slowed the
    realtime p95 on a loaded box: docs/PERFORMANCE.md)."""
    idle_cpu: bool = True
    """Run the prefetched variants' decode and encodes on a thread of idle CPU priority
    (Linux ``SCHED_IDLE``): only when no other thread of the server wants a core, yielding it
    at once when one does. A request that asks for a variant being prefetched then encodes it
    at normal priority instead of waiting on that thread. Off: a thread of normal priority
    (each ~10 ms encode after a miss then takes a core from the requests that come next:
    docs/PERFORMANCE.md, "the unloaded phase's overhead")."""
    wait_s: float = Field(3.0, gt=0)
    """A render's variants not started within this many seconds (never idle) are dropped."""
    poll_s: float = Field(0.02, gt=0)
    """How often a waiting prefetch checks for idle capacity."""
    max_pending: int = Field(256, ge=1)
    """Renders waiting for their variants (the oldest are dropped)."""
    max_items: int = Field(500, ge=1)
    """Most specs one ``POST /v1/prefetch`` may hold."""
    max_jobs: int = Field(100, ge=1)
    """Prefetch handles remembered (the oldest are forgotten, and stopped if still running)."""
    job_concurrency: int = Field(2, ge=1, le=16)
    """Renders of one prefetch job in flight at once."""
    max_attempts: int = Field(20, ge=1)
    """Tries per item when refused (429/503; each after its Retry-After) before it fails."""
    popular_file: Path | None = Path("var/popular.json")
    """Most-requested keys, saved for the next start's warm-up (None: no warm start)."""
    popular_keys: int = Field(2000, ge=1)
    """Keys kept in the popular file."""
    save_every_s: float = Field(60.0, gt=0)
    """How often the popular file is written (and at shutdown)."""
    warm_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """Bytes of popular entries copied from the disk tier into memory at start-up (0: none)."""


class RaySettings(_Section):
    """The ``ray`` executor (runtime/ray_executor.py): each engine a Ray Serve deployment."""

    address: str | None = None
    """None: start a local Ray in this process (no dashboard, small object store). ``auto``
    (the cluster ``ray start`` left on this machine, or RAY_ADDRESS), ``HOST:PORT`` (a GCS) or
    ``ray://HOST:PORT`` (Ray Client): join an existing cluster."""
    connect_timeout_s: float = Field(30.0, gt=0, le=600)
    """An unreachable cluster is an error at start after this long, not a hang."""
    start_timeout_s: float = Field(300.0, gt=0)
    """Deploying the engine replicas (load + warm-up) must finish within this."""
    num_cpus: float | None = Field(None, gt=0)
    """Logical CPUs of a local Ray (None: the machine's cores)."""
    object_store_bytes: int = Field(128 * 1024**2, ge=80 * 1024**2)
    """Object store of a local Ray (Ray's minimum is about 75 MiB)."""
    namespace: str = "swiftshot"
    app_prefix: str = "swiftshot"
    """Serve application per engine: ``{app_prefix}-{engine}``."""
    deploy: bool = True
    """Deploy (or update) the engine applications from this server's settings. False: attach to
    applications someone else deployed (a KubeRay RayService's ``serveConfigV2``)."""
    replica_cpus: float = Field(0.5, gt=0)
    """Logical CPUs each replica reserves (fractional on a small machine)."""
    replica_gpus: float = Field(0.0, ge=0)
    batches_per_replica: int = Field(1, ge=1, le=16)
    """Batches one replica runs at once (its engine threads)."""
    pipeline_depth: int = Field(1, ge=0, le=8)
    """Batches the front may send to each replica ahead of time, to wait inside it while it
    runs (``batcher = front`` only): the replica starts the next batch the moment it finishes
    one, instead of after a round trip to the front and back. They count beside ``slots``, not
    in it; a realtime batch goes before any batch waiting there, and one more place per replica
    is kept for realtime. Serve's ``max_ongoing_requests`` = batches_per_replica + this (+ 1
    when > 0). Batches then go by ``run_stream`` (the replica says when one starts), so a batch
    lost while still waiting in a replica that another input crashed is sent again without
    counting against its own requests (crash isolation). 0: a replica gets its next batch only
    after its last result is back (the default before 2026-12-04; docs/PERFORMANCE.md)."""
    router: Literal["front", "serve"] = "front"
    """``front`` (default): our request router (runtime/ray_router.py) ranks every replica by
    the load this process sees and sends realtime to the replica that frees first; use it with
    ``pipeline_depth`` >= 1. ``serve``: Serve's power-of-two-choices router (random pairs,
    back-off while both are full: 8 replicas reached 0.84-0.88 × N × one). With
    ``pipeline_depth = 0`` our router's count of a replica lags its completion callback, the
    freed replica still looks full, and Serve probes and backs off as with its own router
    (measured: no gain)."""
    transport: Literal["direct", "serve"] = "direct"
    """How batches and their results travel between the front and a replica. ``direct``: a
    TCP connection of the front's own to each replica (runtime/ray_direct.py; the replica
    listens on its node's Ray address, the front learns each replica from its router and asks
    it for the address and a token once through Serve), framed pickles with the master bytes
    inline; Serve still places, health-checks, replaces and autoscales the replicas. ``serve``:
    every batch through the Serve handle (an actor call over gRPC). ``direct`` needs ``router =
    front`` (it tells the front which replicas exist) and ``batcher = front``; otherwise the
    Serve path is used. Measured in docs/PERFORMANCE.md ("Ray hop")."""
    direct_connect_timeout_s: float = Field(10.0, gt=0)
    """Asking a new replica its address and connecting to it must finish within this; until
    then (or when it fails: retried each ``status_interval_s``) batches go through Serve."""
    result_shm_bytes: int = Field(64 * 1024 * 1024, ge=0)
    """``direct``: each link's shared-memory segment for what a replica on the front's own
    machine sends back (masters, previews): the replica copies them into it and only their
    place crosses the socket (runtime/ray_direct.py, runtime/shm.py). Offered to every replica;
    one on another machine cannot map it and keeps the socket. An upper bound of address
    space, committed only as far as results reach (and, at link time, the size of the largest
    ``server.warmup_shapes`` master, 4 MB for 1024²); a message that does not fit goes over
    the socket. 0: off (everything over the socket)."""
    heap_keep_bytes: int = Field(32 * 1024 * 1024, ge=0)
    """``direct``: the front's and each replica's malloc serve blocks below this (at most
    32 MiB) from the heap and keep twice this of freed heap mapped (glibc ``mallopt``,
    runtime/shm.py ``keep_heap``), so a 3 MB master or result copy reuses warm pages instead
    of a fresh mapping faulted in page by page and unmapped again (~1.4 ms a copy on the dev
    VM). Process-wide. 0: glibc's defaults."""
    batcher: Literal["front", "serve"] = "front"
    """``front``: the front's scheduler batches (priorities, deadlines, batch keys) and hands a
    free replica a whole batch. ``serve``: the front sends single requests and each replica
    batches them with ``@serve.batch`` (scheduler.max_batch_size, scheduler.max_wait_ms).
    Measured in docs/PERFORMANCE.md ("Ray executor")."""
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    """min == max: a fixed number of replicas; else Serve's autoscaler between them, driven by
    the front's queue depth (``queue_depth_policy``)."""
    initial_replicas: int | None = Field(None, ge=0)
    target_queue_per_replica: float = Field(4.0, gt=0)
    """Queued (realtime, standard, batch; prefetch never scales up) plus running requests one
    replica should carry; the autoscaler aims at demand ÷ this replicas."""
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)
    look_back_period_s: float = Field(5.0, gt=0)
    """Window Serve averages the queue-depth metric over."""
    throughput_optimized: bool = True
    """Set Ray Serve's RAY_SERVE_THROUGHPUT_OPTIMIZED=1 for this process and a local Ray (router
    and replica code on their callers' event loops, gRPC between handle and replica): the hop
    to a replica went from 4.2 to 1.3 ms p50 (docs/PERFORMANCE.md). Serve's direct ingress,
    which that turns on too, is switched off (RAY_SERVE_ENABLE_DIRECT_INGRESS=0): it held each
    stopping replica 30 s. A cluster you join must set both on its own nodes, as deploy/k8s
    does (``ray_executor.serve_env``)."""
    metrics_push_interval_s: float = Field(1.0, gt=0)
    """How often replicas push the metric (a local Ray only; a cluster sets
    RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S itself)."""
    health_check_period_s: float = Field(5.0, gt=0)
    health_check_timeout_s: float = Field(30.0, gt=0)
    graceful_shutdown_timeout_s: float = Field(20.0, ge=0)
    """A replica being removed finishes its running batch for up to this long."""
    batch_timeout_s: float = Field(120.0, gt=0)
    """A batch not answered within this is a lost worker (the front retries it once); a replica
    busy on one batch longer than this fails its health check and is replaced."""
    status_interval_s: float = Field(1.0, gt=0)
    """How often the front refreshes the replica count (slots) and reports its queue depth."""

    @model_validator(mode="after")
    def _bounds(self) -> RaySettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError(f"ray.max_replicas ({self.max_replicas}) must be >= "
                             f"ray.min_replicas ({self.min_replicas})")
        if self.initial_replicas is not None and not (
                self.min_replicas <= self.initial_replicas <= self.max_replicas):
            raise ValueError("ray.initial_replicas must lie between min_replicas and "
                             "max_replicas")
        return self


class Settings(BaseSettings):
    """All of swiftshot's settings."""

    model_config = SettingsConfigDict(
        env_prefix="SWIFTSHOT_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Path("var")
    """Root for files the service writes (cache, jobs). Relative paths below are resolved here
    only when they are left at their defaults."""
    server: ServerSettings = ServerSettings()
    cache: CacheSettings = CacheSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    engine: EngineSettings = EngineSettings()
    delivery: DeliverySettings = DeliverySettings()
    auth: AuthSettings = AuthSettings()
    limits: LimitsSettings = LimitsSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    jobs: JobsSettings = JobsSettings()
    ops: OpsSettings = OpsSettings()
    prefetch: PrefetchSettings = PrefetchSettings()
    ray: RaySettings = RaySettings()

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @model_validator(mode="after")
    def _anchor_paths(self) -> Settings:
        # Defaults live under data_dir so that one knob moves every file the service writes.
        if self.cache.disk_dir == Path("var/cache"):
            self.cache.disk_dir = self.data_dir / "cache"
        if self.jobs.db_path == Path("var/jobs.sqlite3"):
            self.jobs.db_path = self.data_dir / "jobs.sqlite3"
        if self.engine.diffusion.openvino_dir is None:
            self.engine.diffusion.openvino_dir = self.data_dir / "openvino"
        if self.prefetch.popular_file == Path("var/popular.json"):
            self.prefetch.popular_file = self.data_dir / "popular.json"
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, _FlatAliases(settings_cls), env_settings, _TomlSource(settings_cls))


class _FlatAliases(PydanticBaseSettingsSource):
    """SWIFTSHOT_REDIS_URL and friends: the short names operators reach for first."""

    ALIASES = {"SWIFTSHOT_REDIS_URL": ("cache", "redis_url")}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for env, (section, key) in self.ALIASES.items():
            if os.environ.get(env):
                out.setdefault(section, {})[key] = os.environ[env]
        return out


class _TomlSource(PydanticBaseSettingsSource):
    path: Path | None = None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = _TomlSource.path or (Path(p) if (p := os.environ.get("SWIFTSHOT_CONFIG")) else None)
        if path is None:
            return {}
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except FileNotFoundError:
            raise ValueError(f"config file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config file {str(path)!r} is not valid TOML: {e}") from None


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file (optional), the environment and keyword overrides."""
    _TomlSource.path = Path(config_file) if config_file else None
    try:
        return Settings(**overrides)
    finally:
        _TomlSource.path = None
