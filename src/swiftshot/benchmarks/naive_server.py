"""The naive baseline: what a tutorial would give for "serve an image model over HTTP".

A plain FastAPI app whose generations route calls the engine once per request and encodes the
result: no cache, no coalescing of identical requests, no batching, no priorities, no admission
control. It runs the same engine and the same encoder settings as swiftshot, and answers the
same ``POST /v1/images/generations`` shape, so the benchmark's mix works unchanged and the
difference measured is the serving machinery alone.

The encoded image is kept (bounded, oldest dropped) only so the returned URL can be fetched;
it is never looked up to answer a generation. Product uploads (``POST /v1.0/removebg``, the
form shape swiftshot serves) are cut out per request with the same segmenter.

Run: ``python -m swiftshot.benchmarks.naive_server --port 8100 --engine studio``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import FastAPI, Form, HTTPException, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from swiftshot.config import Settings
from swiftshot.delivery.codecs import content_type, encode, extension
from swiftshot.engines import Engine, FakeEngine, create_engine
from swiftshot.spec import RenderSpec

KEEP_IMAGES = 512


class GenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str
    size: str = "1024x1024"
    n: int = Field(1, ge=1, le=10)
    response_format: Literal["url", "b64_json"] = "url"
    output_format: str = "png"
    seed: int | None = None
    quality: int | None = None


def build_engine(name: str, settings: Settings) -> Engine:
    if name == "fake":
        f = settings.engine.fake
        return FakeEngine(delay_s=f.delay_s, per_item_s=f.per_item_s, steps=f.steps)
    return create_engine(name, settings)


def create_app(engine: Engine, settings: Settings, warmup: tuple[int, int] = (512, 512)) -> FastAPI:
    images: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
    lock = threading.Lock()
    ready = threading.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(engine.load)
        await asyncio.to_thread(engine.warmup, [warmup])
        ready.set()
        yield

    app = FastAPI(title="naive baseline", lifespan=lifespan)

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(status_code=200 if ready.is_set() else 503)

    # A plain `def`: FastAPI runs it on its thread pool, which is what the tutorials do.
    @app.post("/v1/images/generations")
    def generations(req: GenerationRequest, response: Response) -> dict[str, Any]:
        try:
            spec = RenderSpec(prompt=req.prompt, size=req.size, seed=req.seed, engine=engine.name,
                              output_format=req.output_format, quality=req.quality).normalized()
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        data = []
        infer_s = encode_s = 0.0
        for i in range(req.n):
            one = spec if i == 0 else spec.model_copy(update={"seed": (spec.seed or 0) + i})
            t0 = time.perf_counter()
            image = engine.run([one])[0]
            t1 = time.perf_counter()
            body = encode(image, one.output_format, one.quality, settings=settings.delivery)
            infer_s += t1 - t0
            encode_s += time.perf_counter() - t1
            if req.response_format == "b64_json":
                data.append({"b64_json": base64.b64encode(body).decode()})
                continue
            key = f"{uuid.uuid4().hex}.{extension(one.output_format)}"
            with lock:
                images[key] = (body, content_type(one.output_format))
                while len(images) > KEEP_IMAGES:
                    images.popitem(last=False)
            data.append({"url": f"/i/{key}"})
        # its own work, so that a benchmark can tell this server's HTTP round trip from the
        # engine and the encode (bench serve's overhead beyond a minimal server)
        response.headers["Server-Timing"] = (f"infer;dur={infer_s * 1000:.3f}, "
                                             f"encode;dur={encode_s * 1000:.3f}")
        return {"created": int(time.time()), "data": data}

    # A product photo in, its cutout out: decode, segment, encode, per request, on the pool.
    @app.post("/v1.0/removebg")
    def removebg(image_file: UploadFile, format: str = Form("webp")) -> Response:
        from swiftshot import pipeline
        from swiftshot.inputs import InputError, load_image
        from swiftshot.ops.cutout import cutout

        fmt = format if format in ("png", "webp") else "png"
        try:
            image = load_image(image_file.file.read(), settings.limits)
        except InputError as e:
            raise HTTPException(e.status, e.message) from None
        rgba = cutout(image, pipeline.segmenter_for(None))
        body = encode(rgba, fmt, 90 if fmt == "webp" else None, settings=settings.delivery)
        return Response(body, media_type=content_type(fmt))

    @app.get("/i/{key}")
    def image(key: str) -> Response:
        with lock:
            found = images.get(key)
        if found is None:
            raise HTTPException(404, f"no image {key!r} (the naive server keeps the last {KEEP_IMAGES})")
        return Response(found[0], media_type=found[1])

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    p = argparse.ArgumentParser(prog="naive_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--engine", default="studio")
    p.add_argument("--warmup-size", default="512x512")
    args = p.parse_args(argv)
    settings = Settings()
    from swiftshot.spec import parse_size

    app = create_app(build_engine(args.engine, settings), settings, parse_size(args.warmup_size))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
