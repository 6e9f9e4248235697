"""The official openai client, pointed at a real `swiftshot serve` (studio engine), works unchanged."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from openai import OpenAI
from PIL import Image


@pytest.fixture
def studio(studio_server):
    return studio_server


def test_openai_client_b64_json_and_url_round_trip(studio):
    client = OpenAI(base_url=f"{studio.url}/v1", api_key="sk-anything", max_retries=0)
    res = client.images.generate(model="studio", prompt="warm oak table, soft window light",
                                 size="256x256", response_format="b64_json", n=2, extra_body={"seed": 7})
    assert len(res.data) == 2
    images = [Image.open(io.BytesIO(base64.b64decode(d.b64_json)), formats=["PNG"]) for d in res.data]
    assert all(im.size == (256, 256) for im in images)
    a, b = (np.asarray(im.convert("RGB"), dtype=np.int16) for im in images)
    assert np.abs(a - b).mean() > 0.5, "n=2 must give two different images (seeds 7 and 8)"
    assert res.created > 0

    res2 = client.images.generate(model="studio", prompt="warm oak table, soft window light",
                                  size="256x256", response_format="url", output_format="webp",
                                  extra_body={"seed": 7})
    url = res2.data[0].url
    assert url.startswith(studio.url + "/i/") and ".webp" in url
    got = httpx.get(url)
    assert got.status_code == 200 and got.headers["content-type"] == "image/webp"
    webp = np.asarray(Image.open(io.BytesIO(got.content), formats=["WEBP"]).convert("RGB"), np.int16)
    # the same seed through another format: the same picture, up to lossy coding
    assert np.abs(webp - a).mean() < 6


def test_openai_client_errors_are_openai_errors(studio):
    import openai

    client = OpenAI(base_url=f"{studio.url}/v1", api_key="sk-anything", max_retries=0)
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="dall-e-9", prompt="x")
    assert "dall-e-9" in str(e.value) and "studio" in str(e.value)
    with pytest.raises(openai.BadRequestError, match="size"):
        client.images.generate(prompt="x", size="999x1")  # type: ignore[arg-type]
