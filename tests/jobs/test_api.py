"""POST/GET /v1/batches through the real app (in-process ASGI, fake engine, real SQLite)."""

from __future__ import annotations

import io
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from swiftshot.config import Settings
from swiftshot.store.jobs import JobStore


@pytest.fixture
def client(tmp_path):
    from swiftshot.api.app import create_app

    settings = Settings(data_dir=tmp_path / "var", engine={"default": "fake"},
                        server={"warmup_shapes": [(64, 64)]},
                        jobs={"poll_s": 0.05, "webhook_allow_private": True})
    with TestClient(create_app(settings)) as c:
        c.settings = settings
        yield c


def _png(color=(200, 30, 30), size=(96, 80)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _wait_done(client, url: str, timeout: float = 20.0) -> dict:
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        body = client.get(url).json()
        seen.append(body["status"])
        if body["status"] == "done":
            body["_seen"] = seen
            return body
        time.sleep(0.05)
    raise AssertionError(f"batch not done in {timeout}s; statuses {seen}")


def test_accepted_committed_then_done_with_fetchable_results(client):
    items = [{"prompt": f"grey paper sweep {i}", "size": "64x64"} for i in range(5)]
    items.append({"prompt": "jpeg one", "size": "64x64", "output_format": "jpeg", "quality": 70})
    r = client.post("/v1/batches", json={"items": items})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["items"] == 6
    assert body["url"] == f"/v1/batches/{body['id']}" == r.headers["location"]
    # committed before the answer: a separate connection sees every item
    assert len(JobStore(client.settings.jobs.db_path).get_job(body["id"]).items) == 6
    done = _wait_done(client, body["url"])
    assert done["progress"] == {"done": 6, "failed": 0, "total": 6}
    assert [i["index"] for i in done["items"]] == list(range(6))
    assert done["items"][5]["url"].endswith(".jpg?q=70")
    for item in done["items"]:
        got = client.get(item["url"])
        assert got.status_code == 200, item
        img = Image.open(io.BytesIO(got.content))
        assert img.size == (64, 64)
    assert len({i["key"] for i in done["items"]}) == 6


def test_too_many_items_refused_with_clear_message(client):
    r = client.post("/v1/batches", json={"items": [{"prompt": "x"}] * 51})
    assert r.status_code == 422
    err = r.json()["error"]
    assert "at most 50 items; got 51" in err["message"] and err["param"] == "items"


def test_bad_item_names_index_and_field(client):
    items = [{"prompt": "ok"}, {"prompt": "ok"}, {"prompt": "ok"}, {"prompt": "x", "width": 65}]
    r = client.post("/v1/batches", json={"items": items})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == "items[3].width" and "items[3]" in err["message"]
    assert "multiple of 8" in err["message"]
    r = client.post("/v1/batches", json={"items": [{"prompt": "x", "colour": "red"}]})
    assert r.status_code == 422 and "unknown field 'colour'" in r.json()["error"]["message"]
    assert JobStore(client.settings.jobs.db_path).counts() == {}, "nothing stored on refusal"


@pytest.mark.parametrize("body,needle", [
    ({"items": []}, "non-empty list"),
    ({"items": [{"prompt": "x"}], "webhook_url": "ftp://x/y"}, "http:// or https://"),
    ({"items": [{"prompt": "x"}], "priority": "high"}, "unknown field 'priority'"),
    ([1, 2], "JSON object"),
])
def test_malformed_requests_are_4xx(client, body, needle):
    r = client.post("/v1/batches", json=body)
    assert 400 <= r.status_code < 500 and needle in r.json()["error"]["message"]


def test_unknown_id_is_404_json(client):
    r = client.get("/v1/batches/0123456789abcdef")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "batch_not_found"


def test_multipart_photos_become_items_and_corrupt_one_is_named(client):
    files = [("files", ("red.png", _png((220, 20, 20)), "image/png")),
             ("files", ("blue.png", _png((20, 20, 220)), "image/png"))]
    r = client.post("/v1/batches", files=files, data={"preset": "amazon"})
    assert r.status_code == 202, r.text
    job = JobStore(client.settings.jobs.db_path).get_job(r.json()["id"])
    assert job.preset == "amazon" and len({i.product_sha256 for i in job.items}) == 2
    bad = [("files", ("ok.png", _png(), "image/png")),
           ("files", ("broken.png", _png()[:60], "image/png"))]
    r = client.post("/v1/batches", files=bad)
    assert r.status_code == 422
    err = r.json()["error"]
    assert "broken.png" in err["message"] and err["param"] == "items[1].product_file"


def test_batches_are_private_to_their_tenant(tmp_path):
    from swiftshot.api.app import create_app

    keys = tmp_path / "keys.toml"
    keys.write_text('[keys."sk-acme"]\ntenant = "acme"\n[keys."sk-other"]\ntenant = "other"\n')
    settings = Settings(data_dir=tmp_path / "var", engine={"default": "fake"},
                        server={"warmup_shapes": [(64, 64)]}, auth={"api_keys_file": keys})
    with TestClient(create_app(settings)) as c:
        assert c.post("/v1/batches", json={"items": [{"prompt": "x"}]}).status_code == 401
        r = c.post("/v1/batches", json={"items": [{"prompt": "x", "size": "64x64"}]},
                   headers={"Authorization": "Bearer sk-acme"})
        assert r.status_code == 202
        url = r.json()["url"]
        assert c.get(url, headers={"X-Api-Key": "sk-acme"}).status_code == 200
        assert c.get(url, headers={"X-Api-Key": "sk-other"}).status_code == 404
    assert JobStore(settings.jobs.db_path).get_job(r.json()["id"]).tenant == "acme"


def test_idempotency_key_makes_a_retried_post_safe(client):
    items = {"items": [{"prompt": "retry me", "size": "64x64"}]}
    first = client.post("/v1/batches", json=items, headers={"Idempotency-Key": "order-42"})
    again = client.post("/v1/batches", json=items, headers={"Idempotency-Key": "order-42"})
    other = client.post("/v1/batches", json=items, headers={"Idempotency-Key": "order-43"})
    assert first.status_code == again.status_code == other.status_code == 202
    assert first.json()["id"] == again.json()["id"] != other.json()["id"]
    assert sum(JobStore(client.settings.jobs.db_path).counts().values()) == 2


def test_unknown_product_hash_is_refused(client):
    r = client.post("/v1/batches", json={"items": [{"product_sha256": "ab" * 32}]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["param"] == "items[0].product_sha256" and "product_file" in err["message"]
    r = client.post("/v1/batches", json={"items": [{"prompt": "x"}], "preset": "ebay"})
    assert r.status_code == 422 and "unknown preset 'ebay'" in r.json()["error"]["message"]


def test_preset_items_carry_their_compliance_verdict(tmp_path):
    """Each done item of a preset job carries the preset's own check of its result, the same
    JSON as POST /v1/render answers (passed, the failed rules, the measured values)."""
    import base64

    from swiftshot.api.app import create_app
    from swiftshot.testing.products import make_photo

    # "tight": a user preset whose fill rule no placement meets (min above max)
    tight = {"width": 400, "height": 400, "background": [255, 255, 255], "fill": 0.8,
             "min_fill": 0.97, "max_fill": 0.96, "format": "jpeg", "quality": 88}
    settings = Settings(data_dir=tmp_path / "var", engine={"default": "fake"},
                        server={"warmup_shapes": [(64, 64)]},
                        ops={"presets": {"tight": tight}}, jobs={"poll_s": 0.05})
    buf = io.BytesIO()
    make_photo("bottle_white_sweep", (240, 240)).image.save(buf, "JPEG", quality=92)
    photo = buf.getvalue()
    with TestClient(create_app(settings)) as c:
        r = c.post("/v1/batches", files=[("files", ("bottle.jpg", photo, "image/jpeg"))],
                   data={"json": '{"items": [{"product_file": "bottle.jpg", "preset": "amazon"},'
                                 ' {"product_file": "bottle.jpg", "preset": "tight"},'
                                 ' {"prompt": "plain", "size": "64x64"}]}'})
        assert r.status_code == 202, r.text
        done = _wait_done(c, r.json()["url"], timeout=120)
        ok, bad, plain = done["items"]
        assert ok["status"] == bad["status"] == plain["status"] == "done", done["items"]
        assert ok["compliance"]["preset"] == "amazon" and ok["compliance"]["passed"] is True
        assert ok["compliance"]["failed"] == []
        fill = next(x for x in ok["compliance"]["rules"] if x["rule"] == "product_fill")
        assert fill["passed"] and fill["measured"].endswith("of the frame's side")
        assert fill["required"] == ">= 85%"
        assert 0.85 <= float(fill["measured"].split("%")[0]) / 100 <= 0.95
        assert bad["compliance"]["passed"] is False
        assert bad["compliance"]["failed"] == ["product_fill"]
        assert {x["rule"]: x["passed"] for x in bad["compliance"]["rules"]}["product_fill"] is False
        assert "cutout" in ok and 0 <= ok["cutout"]["confidence"] <= 1
        assert "compliance" not in plain and "cutout" not in plain  # no preset, no ops
        # the same verdict as the render answers for the same photo and preset
        rendered = c.post("/v1/render", json={
            "preset": "amazon", "prompt": "product",
            "product_b64": base64.b64encode(photo).decode()}).json()
        assert rendered["compliance"] == ok["compliance"], (rendered, ok)
        # and the webhook body / GET share job_to_dict: a reopened store reads it back
        view = JobStore(settings.jobs.db_path).get_job(r.json()["id"])
        assert view is not None and view.items[0].quality_json
