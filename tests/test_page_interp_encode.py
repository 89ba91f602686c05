"""AppTest runs of the Interpolate and Encode pages on the tiny checkpoints (offline, no dataset on disk)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.app_support import app_test, assert_no_exception, chart_by_key, select_model
from tests.app_support import plotly_array as array
from vae_core.checkpoints import load_checkpoint
from vae_core.inference import encode_image, interpolation_path
from vae_core.metrics import per_image_elbo
from vae_core.preprocess import MAX_UPLOAD_BYTES, prepare_image

NEIGHBOUR = re.compile(r"^#\d+\s·\s.+, d\s=\s\d+\.\d\d$")  # a neighbour's caption: "#12 · 7, d = 1.23"
CORRUPT_PNG = b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 10


def digit_png(*, size: int = 200) -> bytes:
    """Return a PNG of a thick black 7 on a white background."""
    img = Image.new("L", (size, size), 255)
    ImageDraw.Draw(img).line([(50, 40), (150, 40), (90, 165)], fill=0, width=18)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def captions(at) -> list[str]:
    """Return every image caption on the page, in order."""
    return [caption for image in at.image for caption in image.captions]


def metric(at, prefix: str) -> str:
    """Return the value of the metric whose label starts with ``prefix``."""
    values = [m.value for m in at.metric if m.label.startswith(prefix)]
    assert values, f"no metric {prefix!r} among {[m.label for m in at.metric]}"
    return values[0]


def class_traces(spec: dict) -> dict[str, tuple[list, list]]:
    """Return each class trace of a latent map as name -> (x, y); markers (no customdata) are left out."""
    return {
        t["name"]: (array(t["x"]).tolist(), array(t["y"]).tolist()) for t in spec["data"] if "customdata" in t
    }


def marker(spec: dict, name: str) -> np.ndarray:
    """Return the points (M, 2) of the marker trace ``name`` on a latent map."""
    (trace,) = [t for t in spec["data"] if t["name"] == name]
    return np.column_stack([array(trace["x"]), array(trace["y"])])


def app_with_model(page: str, path) -> object:
    """Return an AppTest on ``page`` with the checkpoint at ``path`` as the current model."""
    return select_model(app_test(page), path)


# ---------------------------------------------------------------------------------------- Interpolate


def test_interpolate_loads_with_two_different_test_images(app_env) -> None:
    at = app_test("vae_app/views/interpolate.py")
    assert_no_exception(at)
    assert at.title[0].value == "Interpolate"
    assert any(c.startswith("decoded: 10 images") for c in captions(at))
    assert "A (input)" in captions(at) and "B (input)" in captions(at)
    # A and B default to different classes, so their codes differ.
    assert float(metric(at, "Distance")) > 0
    assert [b.label for b in at.get("download_button")] == ["Download PNG", "Download GIF"]


def test_interpolate_steps_method_and_endpoints(app_env) -> None:
    at = app_test("vae_app/views/interpolate.py")
    at.slider(key="interp_steps").set_value(4).run()
    assert_no_exception(at)
    assert any(c.startswith("decoded: 4 images") for c in captions(at))
    assert not any(c.startswith("decoded: 10 images") for c in captions(at))

    at.radio(key="interp_method").set_value("slerp").run()
    assert_no_exception(at)
    assert any(c.startswith("decoded: 4 images") and c.endswith("spherical (slerp)") for c in captions(at))
    at.radio(key="interp_method").set_value("linear").run()
    assert_no_exception(at)
    assert any(c.endswith(", linear") for c in captions(at))

    # B on the same class and index as A: the same image, so the codes coincide.
    at.selectbox(key="interp_b_class").set_value(at.selectbox(key="interp_a_class").value).run()
    assert_no_exception(at)
    assert at.session_state["interp_b_index"] == at.session_state["interp_a_index"] == 0
    assert float(metric(at, "Distance")) == 0.0
    first = captions(at)[1]
    at.slider(key="interp_b_index").set_value(3).run()
    assert_no_exception(at)
    assert captions(at)[1] != first
    assert float(metric(at, "Distance")) > 0


def test_interpolate_upload_endpoint_and_a_corrupt_file(app_env) -> None:
    at = app_test("vae_app/views/interpolate.py")
    at.radio(key="interp_a_source").set_value("upload").run()
    assert_no_exception(at)
    assert any("Upload an image" in i.value for i in at.info)
    assert not any(c.startswith("decoded:") for c in captions(at))

    at.file_uploader(key="interp_a_upload").set_value(("seven.png", digit_png(), "image/png")).run()
    assert_no_exception(at)
    assert not at.error
    assert "seven.png, as the model sees it" in captions(at)
    assert any(c.startswith("decoded: 10 images") for c in captions(at))

    at.file_uploader(key="interp_a_upload").set_value(("broken.png", CORRUPT_PNG, "image/png")).run()
    assert_no_exception(at)
    assert any("Could not read `broken.png`" in e.value for e in at.error)
    assert not any(c.startswith("decoded:") for c in captions(at))


def test_interpolate_other_model_keeps_working(app_env) -> None:
    at = app_with_model("vae_app/views/interpolate.py", app_env / "tiny-mlp-2.pt")
    assert_no_exception(at)
    assert at.session_state["app_model"]["path"].endswith("tiny-mlp-2.pt")
    at.radio(key="interp_method").set_value("slerp").run()
    assert_no_exception(at)
    assert any(c.startswith("decoded: 10 images") for c in captions(at))


def test_interpolate_draws_the_path_across_the_shared_map(app_env) -> None:
    path = app_env / "tiny-conv-4.pt"
    at = app_with_model("vae_app/views/interpolate.py", path)
    at.slider(key="interp_steps").set_value(6).run()
    assert_no_exception(at)
    spec = chart_by_key(at, "interp_map")
    assert [t["name"] for t in spec["data"]] == ["top", "bottom", "path", "A and B"]
    line = marker(spec, "path")
    assert len(line) == 6 and spec["data"][2]["mode"] == "lines+markers"
    # A and B are test images: their stars sit on their own dots, and the line starts and ends there.
    loaded = load_checkpoint(path)
    atlas = loaded.atlas
    rows = [int(np.flatnonzero(atlas.labels == label)[0]) for label in (0, 1)]
    np.testing.assert_array_equal(marker(spec, "A and B"), atlas.coords[rows])
    np.testing.assert_array_equal(line[[0, -1]], atlas.coords[rows])
    images = loaded.sample.images
    z = interpolation_path(loaded.model, images[rows[0]], images[rows[1]], steps=6).z
    np.testing.assert_allclose(line[1:-1], atlas.place(z)[1:-1], atol=1e-5)


# --------------------------------------------------------------------------------------------- Encode


def test_encode_without_upload_uses_the_example_drawing(app_env) -> None:
    at = app_test("vae_app/views/encode.py")
    assert_no_exception(at)
    assert at.title[0].value == "Encode"
    assert at.selectbox(key="encode_sample").value == -1
    # The drawing goes through the MNIST-style pipeline: its light background is inverted.
    assert "inverted" in captions(at) and "centred" in captions(at)
    assert any("light background detected: inverted" in m.value for m in at.markdown)
    assert metric(at, "−ELBO").endswith("nats")
    assert metric(at, "Percentile").endswith(("st", "nd", "rd", "th"))
    assert at.success or at.warning  # the verdict
    neighbours = [c for c in captions(at) if NEIGHBOUR.search(c)]
    assert len(neighbours) == 8


def test_encode_test_image_skips_preprocessing_and_itself(app_env) -> None:
    at = app_test("vae_app/views/encode.py")
    options = at.selectbox(key="encode_sample").options
    assert options[0].startswith("An example drawing") and len(options) == 3  # drawing + one per class
    at.selectbox(key="encode_sample").set_value(0).run()
    assert_no_exception(at)
    assert any("no preprocessing needed" in c.value for c in at.caption)
    assert "inverted" not in captions(at)
    neighbours = [c for c in captions(at) if NEIGHBOUR.search(c)]
    assert len(neighbours) == 8
    # The query itself (test image #0) is left out of its own neighbours.
    assert all(c.startswith("#") for c in neighbours)
    assert not any(re.match(r"#0\s", c) for c in neighbours)

    at.slider(key="encode_k").set_value(3).run()
    assert_no_exception(at)
    assert len([c for c in captions(at) if NEIGHBOUR.search(c)]) == 3


def test_encode_upload_style_toggle_and_corrupt_file(app_env) -> None:
    at = app_test("vae_app/views/encode.py")
    at.file_uploader(key="encode_upload").set_value(("seven.png", digit_png(), "image/png")).run()
    assert_no_exception(at)
    assert not at.error
    assert at.selectbox(key="encode_sample").disabled
    assert any("`seven.png`" in m.value and "inverted" in m.value for m in at.markdown)
    assert metric(at, "Percentile")

    at.toggle(key="encode_mnist_style").set_value(False).run()
    assert_no_exception(at)
    assert "cropped & resized" in captions(at)
    assert not any("inverted" in m.value for m in at.markdown)

    at.file_uploader(key="encode_upload").set_value(("broken.png", CORRUPT_PNG, "image/png")).run()
    assert_no_exception(at)
    assert any("Could not read `broken.png`" in e.value for e in at.error)
    assert not at.metric  # the page stops at the message

    at.file_uploader(key="encode_upload").set_value(("empty.png", b"", "image/png")).run()
    assert_no_exception(at)
    assert any("empty" in e.value for e in at.error)

    too_big = b"\x89PNG\r\n\x1a\n" + bytes(MAX_UPLOAD_BYTES)
    at.file_uploader(key="encode_upload").set_value(("huge.png", too_big, "image/png")).run()
    assert_no_exception(at)
    assert any("`huge.png` is 20.0 MB; the limit is 20 MB" in e.value for e in at.error)


@pytest.mark.parametrize("model", ["tiny-mlp-2", "tiny-conv-4"])
def test_encode_draws_the_models_shared_map(app_env, model: str) -> None:
    at = app_with_model("vae_app/views/encode.py", app_env / f"{model}.pt")
    assert_no_exception(at)
    expected = "the two latent dimensions" if model == "tiny-mlp-2" else "t-SNE"
    assert any(expected in c.value and "same map as the Latent map page" in c.value for c in at.caption)
    spec = chart_by_key(at, "encode_map")
    assert [t["name"] for t in spec["data"]] == ["top", "bottom", "this image"]
    assert spec["layout"]["xaxis"]["title"]["text"] == ("z0" if model == "tiny-mlp-2" else "t-SNE 1")


def test_encode_a_test_image_shows_its_atlas_numbers(app_env) -> None:
    at = app_with_model("vae_app/views/encode.py", app_env / "tiny-conv-4.pt")
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    index = int(np.flatnonzero(atlas.labels == 1)[0])  # the example of the second class
    assert at.selectbox(key="encode_sample").options[2].startswith(f"Test image #{index} ")
    at.selectbox(key="encode_sample").set_value(index).run()
    assert_no_exception(at)
    # The -ELBO the Latent map's hover shows for this image, and its star exactly on its dot there.
    assert metric(at, "−ELBO") == f"{atlas.elbo[index]:.1f} nats"
    np.testing.assert_array_equal(marker(chart_by_key(at, "encode_map"), "this image"), atlas.coords[[index]])
    rank = round(atlas.percentile(float(atlas.elbo[index])))
    assert re.fullmatch(rf"{rank}(st|nd|rd|th)", metric(at, "Percentile"))


@pytest.mark.parametrize("model", ["tiny-mlp-2", "tiny-conv-4"])
def test_encode_an_upload_lands_on_the_latent_maps_map(app_env, model: str) -> None:
    path = app_env / f"{model}.pt"
    at = app_with_model("vae_app/views/encode.py", path)
    at.file_uploader(key="encode_upload").set_value(("seven.png", digit_png(), "image/png")).run()
    assert_no_exception(at)
    loaded = load_checkpoint(path)
    x = prepare_image(digit_png(), image_shape=loaded.info.model_config.image_shape, style="mnist").x
    mu = encode_image(loaded.model, x).mu
    encode_map = chart_by_key(at, "encode_map")
    np.testing.assert_allclose(marker(encode_map, "this image"), loaded.atlas.place(mu), atol=1e-6)
    assert metric(at, "−ELBO") == f"{per_image_elbo(loaded.model, x).total[0]:.1f} nats"
    # The dots under the star are exactly the Latent map page's dots.
    latent_map = app_with_model("vae_app/views/latent_map.py", path)
    assert set(class_traces(encode_map)) == {"top", "bottom"}
    assert class_traces(encode_map) == class_traces(chart_by_key(latent_map, "latent_map_chart"))
