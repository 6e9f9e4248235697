"""Safe defaults (issue 11, part 3): purges need an admin key or, with auth off, a loopback
caller; answers' URLs never take their host from an untrusted ``Host`` header; ``/metrics``
follows auth; errors never echo unbounded input."""

from __future__ import annotations

import httpx
import pytest

from swiftshot.api.app import create_app
from swiftshot.config import Settings

KEY = "0" * 64


def _asgi_client(settings: Settings, client_ip: str) -> httpx.AsyncClient:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app, client=(client_ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://swiftshot.test")


@pytest.mark.parametrize("path", [f"/v1/cache/{KEY}", "/v1/cache/tags/sku-1"])
async def test_purge_with_auth_off_is_refused_from_a_remote_address(tmp_path, path):
    async with _asgi_client(Settings(data_dir=tmp_path / "var"), "203.0.113.7") as c:
        r = await c.delete(path)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "admin_required"
    assert "loopback" in err["message"] and "api_keys_file" in err["message"]


async def test_purge_with_auth_off_through_a_proxy_is_refused(tmp_path):
    """nginx on the same host connects from loopback; its X-Forwarded-For names the caller."""
    async with _asgi_client(Settings(data_dir=tmp_path / "var"), "127.0.0.1") as c:
        r = await c.delete(f"/v1/cache/{KEY}", headers={"X-Forwarded-For": "198.51.100.2"})
        assert r.status_code == 403, r.text
        r = await c.delete(f"/v1/cache/{KEY}", headers={"Forwarded": "for=198.51.100.2"})
        assert r.status_code == 403, r.text


def test_purge_with_auth_off_from_loopback_still_works(shared_server):
    # the key is unknown: 404 (not 403) shows the purge itself was allowed
    assert shared_server.client.delete(f"/v1/cache/{KEY}").status_code == 404


def test_answer_urls_ignore_an_untrusted_host_header(shared_server):
    r = shared_server.client.post(
        "/v1/images/generations", headers={"Host": "evil.example"},
        json={"prompt": "host header", "size": "64x64", "response_format": "url"})
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert "evil.example" not in url
    assert url.startswith(shared_server.url + "/i/"), url


def test_answer_urls_use_public_url_when_set(serve):
    s = serve(env={"SWIFTSHOT_SERVER__PUBLIC_URL": "https://img.shop.example/"})
    r = s.client.post("/v1/images/generations", headers={"Host": "evil.example"},
                      json={"prompt": "public url", "size": "64x64"})
    assert r.json()["data"][0]["url"].startswith("https://img.shop.example/i/")


def test_answer_urls_honour_a_trusted_host(serve):
    s = serve(env={"SWIFTSHOT_SERVER__TRUSTED_HOSTS": '["cdn.shop.example"]'})
    body = {"prompt": "trusted", "size": "64x64"}
    r = s.client.post("/v1/images/generations", headers={"Host": "cdn.shop.example:8443"}, json=body)
    assert r.json()["data"][0]["url"].startswith("http://cdn.shop.example:8443/i/")
    r = s.client.post("/v1/images/generations", headers={"Host": "evil.example"}, json=body)
    assert "evil.example" not in r.json()["data"][0]["url"]


def test_metrics_need_a_key_when_auth_is_on(serve, tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys."sk-ops-0123456789"]\ntenant = "ops"\n')
    s = serve(env={"SWIFTSHOT_AUTH__API_KEYS_FILE": str(keys)})
    r = s.client.get("/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    r = s.client.get("/metrics", headers={"Authorization": "Bearer sk-ops-0123456789"})
    assert r.status_code == 200 and "swiftshot_" in r.text


LONG = "a" * 6000


@pytest.mark.parametrize("method,path,kwargs", [
    ("GET", f"/i/{LONG}", {}),
    ("GET", f"/i/{LONG}.webp", {}),
    ("GET", f"/i/{KEY}.{LONG}", {}),
    ("GET", f"/i/{KEY}.webp?q={LONG}", {}),
    ("GET", f"/v2/{LONG}", {}),
    ("DELETE", f"/v1/cache/{LONG}", {}),
    ("DELETE", f"/v1/cache/tags/{LONG}%20x", {}),
    ("GET", f"/v1/batches/{LONG}", {}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", LONG: 1}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": LONG}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "model": LONG}}),
    ("POST", "/v1/render", {"json": {"prompt": "x", LONG: 1}}),
    ("POST", "/v1/render", {"json": {"prompt": "x"}, "headers": {"Accept": "image/" + LONG}}),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x"}, "headers": {"X-Priority": LONG}}),
    ("POST", "/v1.0/removebg", {"data": {"size": LONG}, "files": {"image_file": ("a.png", b"x")}}),
])
def test_errors_never_echo_unbounded_input(shared_server, method, path, kwargs):
    r = shared_server.client.request(method, path, **kwargs)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert len(r.content) < 1500, f"{len(r.content)} bytes: {r.text[:200]}…"
    assert "aaaaaaaaaa" in r.text, "the start of what was wrong is still shown"
