"""AppTest runs of the Interpolate and Encode pages on the tiny checkpoints (offline, no dataset on disk)."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.app_support import app_test, assert_no_exception, chart_by_key, select_model
from tests.app_support import plotly_array as array
from tests.helpers import tiny_model
from vae_core.bundle import save_trained
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import load_dataset
from vae_core.inference import encode_image, interpolation_path
from vae_core.metrics import per_image_elbo
from vae_core.preprocess import MAX_UPLOAD_BYTES, prepare_image
from vae_core.training import fit

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


def test_encode_opens_on_an_empty_canvas(app_env) -> None:
    at = app_test("vae_app/views/encode.py")
    assert_no_exception(at)
    assert at.title[0].value == "Encode"
    assert at.radio(key="encode_source").value == "draw"
    assert any("Draw on the canvas" in i.value for i in at.info)
    assert not at.metric  # nothing to score before the first stroke


def test_encode_the_example_drawing(app_env) -> None:
    at = app_test("vae_app/views/encode.py")
    at.radio(key="encode_source").set_value("example").run()
    assert_no_exception(at)
    assert at.selectbox(key="encode_sample").value == -1
    # The tiny models learned from blobs, not digits: the drawing is resized, not centred.
    assert not at.toggle(key="encode_mnist_style").value
    assert "cropped & resized" in captions(at) and "centred" not in captions(at)
    at.toggle(key="encode_mnist_style").set_value(True).run()
    assert_no_exception(at)
    # Centred like MNIST: its light background is inverted.
    assert "inverted" in captions(at) and "centred" in captions(at)
    assert any("light background detected: inverted" in m.value for m in at.markdown)
    assert metric(at, "−ELBO").endswith("nats")
    assert metric(at, "Percentile").endswith(("st", "nd", "rd", "th"))
    assert at.success or at.warning  # the verdict
    neighbours = [c for c in captions(at) if NEIGHBOUR.search(c)]
    assert len(neighbours) == 8


def test_encode_test_image_skips_preprocessing_and_itself(app_env) -> None:
    at = app_test("vae_app/views/encode.py")
    at.radio(key="encode_source").set_value("example").run()
    options = at.selectbox(key="encode_sample").options
    assert options[0].startswith("A drawing on paper") and len(options) == 3  # drawing + one per class
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
    at.radio(key="encode_source").set_value("upload").run()
    assert any("Upload an image" in i.value for i in at.info)
    at.toggle(key="encode_mnist_style").set_value(True).run()
    at.file_uploader(key="encode_upload").set_value(("seven.png", digit_png(), "image/png")).run()
    assert_no_exception(at)
    assert not at.error
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
    at.radio(key="encode_source").set_value("example").run()
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
    at.radio(key="encode_source").set_value("example").run()
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
    at.radio(key="encode_source").set_value("upload").run()
    at.file_uploader(key="encode_upload").set_value(("seven.png", digit_png(), "image/png")).run()
    assert_no_exception(at)
    loaded = load_checkpoint(path)
    x = prepare_image(digit_png(), image_shape=loaded.info.model_config.image_shape, style="plain").x
    mu = encode_image(loaded.model, x).mu
    encode_map = chart_by_key(at, "encode_map")
    np.testing.assert_allclose(marker(encode_map, "this image"), loaded.atlas.place(mu), atol=1e-6)
    assert metric(at, "−ELBO") == f"{per_image_elbo(loaded.model, x).total[0]:.1f} nats"
    # The dots under the star are exactly the Latent map page's dots.
    latent_map = app_with_model("vae_app/views/latent_map.py", path)
    assert set(class_traces(encode_map)) == {"top", "bottom"}
    on_latent_map = class_traces(
        chart_by_key(latent_map, "latent_map_chart")
    )  # may hold more (a clickable plane)
    assert class_traces(encode_map) == {name: on_latent_map[name] for name in ("top", "bottom")}


# ------------------------------------------------------------- a model of shapes, not digits (issue 10)


def shape_png(kind: str, *, size: int = 200, box: tuple[int, int, int, int] = (20, 20, 80, 80)) -> bytes:
    """Return a PNG of a filled white ``kind`` ("square" or "circle") inside ``box`` on black."""
    img = Image.new("L", (size, size), 0)
    corners = [box[0], box[1], box[2] - 1, box[3] - 1]
    draw = ImageDraw.Draw(img)
    (draw.rectangle if kind == "square" else draw.ellipse)(corners, fill=255)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def shapes_checkpoint(tmp_path_factory) -> Path:
    """Train a tiny model for one epoch on a generated folder of squares and circles; return its folder."""
    images = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for kind in ("square", "circle"):
        (images / kind).mkdir()
        for i in range(24):
            side = int(rng.integers(40, 120))
            left, top = (int(v) for v in rng.integers(0, 200 - side, size=2))
            (images / kind / f"{i}.png").write_bytes(
                shape_png(kind, box=(left, top, left + side, top + side))
            )
    data = load_dataset(f"folder:{images}")
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=2, hidden=(32,)))
    train = TrainConfig(dataset=data.name, epochs=1, batch_size=16, device="cpu")
    history = fit(model, data, train).history
    folder = tmp_path_factory.mktemp("shape-models")
    save_trained(folder / "shapes-mlp-2.pt", model=model, data=data, train_config=train, history=history)
    return folder


@pytest.fixture
def shapes_env(app_env, shapes_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at the folder holding only the shapes model."""
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(shapes_checkpoint))
    return shapes_checkpoint / "shapes-mlp-2.pt"


def ink_box(x) -> tuple[int, int, int, int]:
    """Return (top, left, height, width) of the pixels of ``x`` (1, 1, H, W) brighter than one half."""
    ink = np.asarray(x[0, 0]) > 0.5
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_a_shape_models_upload_is_not_centred_like_a_digit(shapes_env: Path) -> None:
    square = shape_png("square")  # a 60-pixel square at the top left of 200x200, as in the training folder
    loaded = load_checkpoint(shapes_env)
    assert loaded.info.dataset.startswith("folder:")
    at = app_test("vae_app/views/encode.py")
    at.radio(key="encode_source").set_value("upload").run()
    assert not at.toggle(key="encode_mnist_style").value  # off: the folder was resized, not centred
    at.file_uploader(key="encode_upload").set_value(("square.png", square, "image/png")).run()
    assert_no_exception(at)
    notes = [m.value for m in at.markdown if "What was done to `square.png`" in m.value]
    assert notes and "resized to 28x28" in notes[0] and "centre of mass" not in notes[0]
    assert "nothing needed changing" not in notes[0]
    assert "cropped & resized" in captions(at) and "centred" not in captions(at)
    # The page scored the square as it is: still a square, still at the top left.
    x = prepare_image(square, image_shape=(1, 28, 28), style="plain").x
    top, left, height, width = ink_box(x)
    assert height == width and 7 <= width <= 10 and top <= 4 and left <= 4
    plain_score = float(per_image_elbo(loaded.model, x).total[0])
    assert metric(at, "−ELBO") == f"{plain_score:.1f} nats"

    at.toggle(key="encode_mnist_style").set_value(True).run()  # a person can still ask for digit centring
    assert_no_exception(at)
    assert any("centre of mass" in m.value for m in at.markdown)
    centred = prepare_image(square, image_shape=(1, 28, 28), style="mnist").x
    assert ink_box(centred) == (4, 4, 20, 20)
    assert metric(at, "−ELBO") == f"{float(per_image_elbo(loaded.model, centred).total[0]):.1f} nats"


def test_interpolate_prepares_a_shape_models_upload_with_the_same_toggle(shapes_env: Path) -> None:
    at = app_test("vae_app/views/interpolate.py")
    assert not at.toggle(key="interp_mnist_style").value
    at.radio(key="interp_a_source").set_value("upload").run()
    at.file_uploader(key="interp_a_upload").set_value(("square.png", shape_png("square"), "image/png")).run()
    assert_no_exception(at)
    assert "square.png, as the model sees it" in captions(at)
    assert any("resized to 28x28" in c.value and "centre of mass" not in c.value for c in at.caption)
    at.toggle(key="interp_mnist_style").set_value(True).run()
    assert_no_exception(at)
    assert any("centre of mass" in c.value for c in at.caption)


def test_the_toggle_follows_the_model(app_env, tmp_path, monkeypatch) -> None:
    """On by default for a model of digits, off for one of blobs, reset to the model's default on a switch."""
    folder = tmp_path / "models"
    folder.mkdir()
    blobs = shutil.copy(app_env / "tiny-mlp-2.pt", folder / "blobs.pt")
    data = load_dataset("digits")
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=2, hidden=(32,)))
    train = TrainConfig(dataset="digits", epochs=1, batch_size=64, device="cpu", max_train_images=128)
    history = fit(model, data, train).history
    digits = save_trained(folder / "digits.pt", model=model, data=data, train_config=train, history=history)
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(folder))
    at = select_model(app_test("vae_app/views/encode.py"), digits)
    assert at.toggle(key="encode_mnist_style").value
    at.toggle(key="encode_mnist_style").set_value(False).run()
    assert not at.toggle(key="encode_mnist_style").value  # the person's choice holds for this model
    at = select_model(at, Path(blobs))
    assert not at.toggle(key="encode_mnist_style").value
    at = select_model(at, digits)
    assert at.toggle(key="encode_mnist_style").value  # a switch resets it to the model's default


def test_interpolate_draw_source_waits_for_a_drawing(app_env) -> None:
    at = app_test("vae_app/views/interpolate.py")
    at.radio(key="interp_b_source").set_value("draw").run()
    assert_no_exception(at)
    assert any("Draw on the canvas" in i.value for i in at.info)
    assert not any(c.startswith("decoded:") for c in captions(at))


def test_interpolate_takes_a_row_picked_on_the_latent_map_once(app_env) -> None:
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    at = app_with_model("vae_app/views/interpolate.py", app_env / "tiny-conv-4.pt")
    at.radio(key="interp_b_source").set_value("upload").run()
    row = int(np.flatnonzero(atlas.labels == 1)[2])  # the third image of the second class
    at.session_state["interp_b_pick"] = row
    at.run()
    assert_no_exception(at)
    assert at.radio(key="interp_b_source").value == "test image"
    assert at.selectbox(key="interp_b_class").value == 1 and at.slider(key="interp_b_index").value == 2
    assert f"test image #{row} · bottom" in captions(at)
    assert "interp_b_pick" not in at.session_state
    at.slider(key="interp_b_index").set_value(0).run()  # consumed: the person's next choice holds
    assert at.slider(key="interp_b_index").value == 0

    at.session_state["interp_a_pick"] = len(atlas) + 5
    at.run()
    assert_no_exception(at)
    assert any("not among these images" in w.value for w in at.warning)
