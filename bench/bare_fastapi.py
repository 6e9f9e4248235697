"""A bare FastAPI app that serves one image from memory: the reference for `GET /i/` hits.

It does the least a FastAPI app can do to answer the same request as swiftshot's delivery
route: one route with a path parameter, a dict look-up, the same bytes with the same headers
(Content-Type, ETag, immutable Cache-Control), under uvicorn with the same loop and HTTP parser
as `swiftshot serve` (uvloop, httptools), no access log. No cache tiers, no metrics, no auth.

    python bench/bare_fastapi.py --port 8001 --file image.webp --name KEY.webp
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response


def make_app(images: dict[str, bytes]) -> FastAPI:
    app = FastAPI()
    etags = {k: '"' + hashlib.blake2b(v, digest_size=16).hexdigest() + '"'
             for k, v in images.items()}

    @app.get("/i/{name}")
    async def image(name: str) -> Response:  # async: no thread-pool hop (its fastest form)
        data = images.get(name)
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/webp",
                        headers={"ETag": etags[name],
                                 "Cache-Control": "public, max-age=31536000, immutable"})

    return app


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--file", required=True, help="the image bytes to serve")
    ap.add_argument("--name", required=True, help="its name under /i/")
    args = ap.parse_args()
    app = make_app({args.name: Path(args.file).read_bytes()})
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
