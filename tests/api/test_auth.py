"""API keys, tiers, rate limits and admin purges."""

from __future__ import annotations

import pytest
from openai import OpenAI

from swiftshot.api.auth import Auth, Principal, priority
from swiftshot.api.errors import ApiError
from swiftshot.api.ratelimit import TokenBuckets
from swiftshot.config import AuthSettings

KEYS = """
[keys."sk-admin-0123456789"]
tenant = "ops"
tier = "realtime"
admin = true
rate_per_s = 100
burst = 100

[keys."sk-acme-0123456789"]
tenant = "acme"
tier = "batch"
rate_per_s = 0.5
burst = 2
"""


@pytest.fixture
def keys_file(tmp_path):
    p = tmp_path / "keys.toml"
    p.write_text(KEYS)
    return p


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    b = TokenBuckets(clock=lambda: now[0])
    assert b.take("t", 2.0, 3) == 0 and b.take("t", 2.0, 3) == 0 and b.take("t", 2.0, 3) == 0
    wait = b.take("t", 2.0, 3)
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert b.take("t", 2.0, 3) == 0
    assert b.take("other", 2.0, 3) == 0  # tenants do not share a bucket
    assert b.take("t", 2.0, 3, cost=5) == pytest.approx(1.5)  # more than a full bucket


def test_priority_is_capped_at_the_keys_tier():
    batch = Principal("a", "batch", 1.0, 1, False)
    assert priority(batch, None) == "batch"
    assert priority(batch, "realtime") == "batch"
    assert priority(batch, "prefetch") == "prefetch"
    assert priority(Principal("b", "realtime", 1.0, 1, False), "standard") == "standard"
    with pytest.raises(ApiError, match="realtime"):
        priority(batch, "asap")


def test_keys_file_errors_name_the_file_and_problem(tmp_path):
    bad = tmp_path / "k.toml"
    bad.write_text('[keys."sk-1"]\ntenant = "x"\ntier = "vip"\n')
    with pytest.raises(ValueError, match="k.toml.*sk-1"):
        Auth(AuthSettings(api_keys_file=bad))
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="nope.json.*cannot be read"):
        Auth(AuthSettings(api_keys_file=missing))


def test_keys_from_json_and_bearer_or_x_api_key(tmp_path):
    p = tmp_path / "k.json"
    p.write_text('{"sk-j": {"tenant": "j", "tier": "standard"}}')
    a = Auth(AuthSettings(api_keys_file=p))
    assert a.authenticate({"authorization": "Bearer sk-j"}).tenant == "j"
    assert a.authenticate({"x-api-key": "sk-j"}).tenant == "j"
    for headers in ({}, {"authorization": "Bearer sk-"}, {"authorization": "Basic sk-j"},
                    {"x-api-key": "sk-j2"}):
        with pytest.raises(ApiError) as e:
            a.authenticate(headers)
        assert e.value.status == 401


def test_auth_over_http(serve, keys_file):
    s = serve(env={"SWIFTSHOT_AUTH__API_KEYS_FILE": str(keys_file)})
    body = {"prompt": "auth", "size": "64x64"}
    r = s.client.post("/v1/render", json=body)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    assert s.client.post("/v1/render", json=body,
                         headers={"Authorization": "Bearer sk-wrong"}).status_code == 401
    bad = s.client.post("/v1/images/generations", json={"nonsense": 1})
    assert bad.status_code == 401, "no word on the body before the caller is known"

    admin = {"Authorization": "Bearer sk-admin-0123456789"}
    acme = {"X-Api-Key": "sk-acme-0123456789"}
    key = s.client.post("/v1/render", json=body, headers=admin).json()["key"]
    assert s.client.get(f"/i/{key}.png").status_code == 200  # delivery URLs are public

    # acme: burst 2 at 0.5/s → the third request in a row is refused with a Retry-After
    codes = [s.client.post("/v1/render", json={**body, "seed": i}, headers=acme) for i in range(3)]
    assert [c.status_code for c in codes[:2]] == [200, 200]
    assert codes[2].status_code == 429 and int(codes[2].headers["retry-after"]) >= 1
    assert "acme" in codes[2].json()["error"]["message"]

    assert s.client.delete(f"/v1/cache/{key}", headers=acme).status_code == 403
    assert s.client.delete(f"/v1/cache/{key}", headers=admin).status_code == 200

    client = OpenAI(base_url=f"{s.url}/v1", api_key="sk-admin-0123456789", max_retries=0)
    res = client.images.generate(prompt="through the client", size="64x64")
    assert res.data[0].url.startswith(s.url)
