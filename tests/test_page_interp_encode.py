"""AppTest runs of the Interpolate and Encode pages on the tiny checkpoints (offline, no dataset on disk)."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageDraw

from tests.app_support import app_test, assert_no_exception, select_model
from vae_core.preprocess import MAX_UPLOAD_BYTES

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


def app_with_model(page: str, path) -> object:
    """Return an AppTest on ``page`` with the checkpoint at ``path`` as the current model."""
    return select_model(app_test(page), path)


# ---------------------------------------------------------------------------------------- Interpolate


def test_interpolate_loads_with_two_different_test_images(app_env) -> None:
    at = app_test("pages/interpolate.py")
    assert_no_exception(at)
    assert at.title[0].value == "Interpolate"
    assert any(c.startswith("decoded: 10 images") for c in captions(at))
    assert "A (input)" in captions(at) and "B (input)" in captions(at)
    # A and B default to different classes, so their codes differ.
    assert float(metric(at, "Distance")) > 0
    assert [b.label for b in at.get("download_button")] == ["Download PNG", "Download GIF"]


def test_interpolate_steps_method_and_endpoints(app_env) -> None:
    at = app_test("pages/interpolate.py")
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
    at = app_test("pages/interpolate.py")
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
    at = app_with_model("pages/interpolate.py", app_env / "tiny-mlp-2.pt")
    assert_no_exception(at)
    assert at.session_state["app_model"]["path"].endswith("tiny-mlp-2.pt")
    at.radio(key="interp_method").set_value("slerp").run()
    assert_no_exception(at)
    assert any(c.startswith("decoded: 10 images") for c in captions(at))


# --------------------------------------------------------------------------------------------- Encode


def test_encode_without_upload_uses_the_example_drawing(app_env) -> None:
    at = app_test("pages/encode.py")
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
    at = app_test("pages/encode.py")
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
    at = app_test("pages/encode.py")
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
def test_encode_latent_map_for_two_and_more_dimensions(app_env, model: str) -> None:
    at = app_with_model("pages/encode.py", app_env / f"{model}.pt")
    assert_no_exception(at)
    expected = "the two latent dimensions" if model == "tiny-mlp-2" else "principal components"
    assert any(expected in c.value for c in at.caption)
