"""Locust load test of swiftshot with the same request mix as ``swiftshot bench serve``.

    locust -f bench/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 2m

The mix (Zipf prompt popularity, priority classes, product uploads, browser Accept/Client-Hint
headers on image fetches) comes from ``swiftshot.benchmarks.mix``, so both tools load the
service the same way. Locust users are closed loop (each waits for its answer); for latency
figures that a slow server cannot flatter, use ``swiftshot bench serve`` (open loop). Requests are
named by class (``generate [realtime]`` ...) so Locust's table breaks latency down by priority.
Like the benchmark, it refuses targets that are not on this machine.
"""

from __future__ import annotations

import random

from locust import HttpUser, between, events, task

from swiftshot.benchmarks.http import loopback_target
from swiftshot.benchmarks.mix import DEFAULT_PRIORITY_MIX, Mix, MixConfig, default_prompts

REFUSED = (429, 503)


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--zipf-s", type=float, default=1.1, help="Zipf exponent of prompts")
    parser.add_argument("--prompts", type=int, default=600, help="distinct prompts")
    parser.add_argument("--priority-mix", default=DEFAULT_PRIORITY_MIX)
    parser.add_argument("--upload-share", type=float, default=0.0,
                        help="share of product uploads (needs --upload-route)")
    parser.add_argument("--upload-route", default="", help="POST route taking a product photo")
    parser.add_argument("--fetch-share", type=float, default=0.5)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--image-format", default="webp")
    parser.add_argument("--engine-model", default="studio", help="model field of the requests")
    parser.add_argument("--mix-seed", type=int, default=0)


@events.init.add_listener
def _loopback_only(environment, **_) -> None:
    # On init, not test_start: locust treats an exception in an init handler as fatal before any
    # user starts, whereas a test_start handler's exception is only logged while the users run
    # (they did send requests to the remote host, and the exit code raced the -t timer).
    loopback_target(environment.host or "")


class ShopUser(HttpUser):
    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        o = self.environment.parsed_options
        self.upload_route = getattr(o, "upload_route", "") if o else ""
        cfg = MixConfig(
            prompts=tuple(default_prompts()[: getattr(o, "prompts", 600)]),
            zipf_s=getattr(o, "zipf_s", 1.1),
            priority_mix=getattr(o, "priority_mix", DEFAULT_PRIORITY_MIX),
            upload_share=getattr(o, "upload_share", 0.0) if self.upload_route else 0.0,
            fetch_share=getattr(o, "fetch_share", 0.5),
            size=getattr(o, "size", "512x512"),
            output_format=getattr(o, "image_format", "webp"),
            model=getattr(o, "engine_model", "studio"),
            # Each user its own stream, all reproducible from the one seed.
            seed=getattr(o, "mix_seed", 0) * 100_003 + random.randrange(1_000_000),
        )
        self.mix = Mix(cfg)

    @task
    def one_request(self) -> None:
        req = self.mix.next()
        if req.kind == "upload":
            self._upload(req)
            return
        with self.client.post("/v1/images/generations", json=req.body, headers=req.headers,
                              name=f"generate [{req.priority}]", catch_response=True) as resp:
            if resp.status_code in REFUSED:
                resp.failure(f"refused {resp.status_code}")
                return
            if not resp.ok:
                resp.failure(f"{resp.status_code}: {resp.text[:200]}")
                return
            resp.success()
            url = _path(resp.json())
        if req.fetch_headers is not None and url:
            self.client.get(url, headers=req.fetch_headers, name="GET /i/{key}")

    def _upload(self, req) -> None:
        from swiftshot.benchmarks.mix import product_png

        files = {"image": ("product.png", product_png(self.mix.rng), "image/png")}
        data = {k: str(v) for k, v in req.body.items() if k != "model"}
        self.client.post(self.upload_route, data=data, files=files, headers=req.headers,
                         name=f"upload [{req.priority}]")


def _path(body) -> str | None:
    try:
        url = body["data"][0]["url"]
    except (KeyError, IndexError, TypeError):
        return None
    if "://" in url:
        url = "/" + url.split("://", 1)[1].split("/", 1)[-1]
    return url
