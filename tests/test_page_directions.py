"""The Attribute vectors and Generate by class pages through AppTest, on the shipped and tiny checkpoints."""

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.app_support import ROOT, app_test, assert_no_exception, chart_by_key, select_model
from tests.helpers import random_splits, tiny_model
from vae_app import state
from vae_core.bundle import save_trained
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.inference import decode_latents
from vae_core.training import fit

DIRECTIONS = "vae_app/views/directions.py"
GENERATE = "vae_app/views/generate.py"
SHIPPED = ("mnist-conv-16", "mnist-mlp-2", "digits-mlp-8")


def shipped(name: str) -> Path:
    path = ROOT / "checkpoints" / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"needs the shipped checkpoints/{name}.pt (make checkpoints)")
    return path


@pytest.fixture
def shipped_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at the shipped checkpoints and at an empty data folder (offline: the bundled samples)."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(ROOT / "checkpoints"))
    monkeypatch.setenv("VAE_DATA_DIR", str(empty))
    monkeypatch.setenv("VAE_AUTOSAVE_DIR", str(tmp_path / "autosave"))
    return ROOT / "checkpoints"


def decoded_pictures(at) -> list[np.ndarray]:
    """Return every decoded picture of the page, in order (the moved image, then the analogy)."""
    found = []
    for m in at.markdown:
        if 'alt="The decoded image"' in m.value:
            src = m.value.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
            found.append(
                np.asarray(Image.open(io.BytesIO(base64.b64decode(src))).convert("L"), dtype=np.float32)
            )
    return found


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("name", SHIPPED)
def test_attribute_vector_page_moves_an_image_on_each_shipped_model(shipped_env: Path, name: str):
    path = shipped(name)
    at = select_model(app_test(DIRECTIONS, timeout=120), path)
    assert [s.value for s in at.main.subheader] == [
        "1 · Two groups",
        "2 · Move an image along it",
        "3 · Analogies: a − b + c",
    ]
    # Classes 0 and 1 are far apart in every shipped model: the direction separates them.
    assert float(metric(at, "Separation (AUC)")) > 0.95
    hist = chart_by_key(at, "directions_hist")
    assert [t["name"] for t in hist["data"]] == ["class 0", "class 1"]
    assert hist["layout"]["shapes"], "the image being moved is marked on the histogram"
    # At t = 0 the picture is the decoded code of the chosen test image itself.
    loaded = load_checkpoint(path)
    row = int(np.flatnonzero(loaded.atlas.labels == 0)[0])
    at0 = decoded_pictures(at)[0]
    expected = decode_latents(loaded.model, loaded.atlas.mu[row])[0, 0].numpy() * 255
    small = at0[:: at0.shape[0] // 28, :: at0.shape[1] // 28][:28, :28]
    assert np.abs(small - expected).max() <= 1.0
    at.slider(key="directions_t").set_value(1.5).run()
    assert_no_exception(at)
    moved = decoded_pictures(at)[0]
    assert moved.shape == at0.shape and np.abs(moved - at0).mean() > 5, (
        "moving along the direction changed nothing"
    )
    assert len(decoded_pictures(at)) == 2  # the analogy's result too
    at.toggle(key="directions_class_means").set_value(True).run()
    assert_no_exception(at)
    assert not at.error
    a_class = at.selectbox(key="directions_a_class").value
    at.selectbox(key="directions_b_class").set_value(a_class).run()
    assert any("class means cancel out" in e.value for e in at.error)


def test_map_selections_as_groups_and_bad_groups(shipped_env: Path):
    path = shipped("mnist-conv-16")
    at = select_model(app_test(DIRECTIONS, timeout=120), path)
    at.radio(key="directions_groups").set_value("two selections on the map").run()
    assert_no_exception(at)
    assert any("Both groups need at least one image" in i.value for i in at.info)
    assert chart_by_key(at, "directions_map") is not None
    assert chart_by_key(at, "directions_hist") is None
    assert len(decoded_pictures(at)) == 1  # no direction to move along yet; the analogy still works
    loaded = load_checkpoint(path)
    here = [state.model_key(loaded), loaded.atlas.data_key]
    threes = np.flatnonzero(loaded.atlas.labels == 3)[:40].tolist()
    eights = np.flatnonzero(loaded.atlas.labels == 8)[:40].tolist()
    at.session_state["directions_group_1"] = {"atlas": here, "rows": threes}
    at.session_state["directions_group_2"] = {"atlas": here, "rows": eights}
    at.run()
    assert_no_exception(at)
    assert not at.info and float(metric(at, "Separation (AUC)")) > 0.8
    names = [t["name"] for t in chart_by_key(at, "directions_map")["data"]]
    assert names[-2:] == ["group 1", "group 2"]  # the groups ringed on the map
    # A selection made on another model's atlas is not used for this one.
    at.session_state["directions_group_2"] = {"atlas": ["other model", "other data"], "rows": eights}
    at.run()
    assert any("Both groups need" in i.value for i in at.info)
    # The same images in both groups: no direction, a clear message instead of a traceback.
    at.session_state["directions_group_2"] = {"atlas": here, "rows": threes}
    at.run()
    assert_no_exception(at)
    assert any("same mean code" in e.value for e in at.error)


def test_generate_by_class_beats_the_prior_on_a_shipped_model(shipped_env: Path):
    at = select_model(app_test(GENERATE, timeout=120), shipped("mnist-conv-16"))
    assert at.selectbox(key="generate_class").value == 7
    mixture, prior = (float(m.value.rstrip("%")) for m in at.metric if m.label == "Classified as 7")
    assert mixture >= 60 and mixture > prior + 30
    first = at.image[0].value
    spec = chart_by_key(at, "generate_shares")
    assert [t["name"] for t in spec["data"]] == ["mixture samples", "prior samples"]
    at.number_input(key="generate_seed").set_value(1).run()
    assert_no_exception(at)
    assert at.image[0].value != first  # another seed, other samples
    at.slider(key="generate_temperature").set_value(0.6).run()
    assert_no_exception(at)
    assert "From N(0, 0.6² I)" in [h.value for h in at.main.subheader]
    cooler, _ = (float(m.value.rstrip("%")) for m in at.metric if m.label == "Classified as 7")
    assert cooler >= 90  # nearer the class's centres: more typical 7s
    at.selectbox(key="generate_class").set_value(1).run()
    assert_no_exception(at)
    assert [m.label for m in at.metric] == ["Classified as 1", "Classified as 1"]


@pytest.fixture
def one_class_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny checkpoint whose images all have one class, as a folder of unlabelled images gives."""
    data = random_splits(n_train=64, n_test=48)
    data = data._replace(
        train_y=torch.zeros_like(data.train_y), test_y=torch.zeros_like(data.test_y), class_names=("images",)
    )
    model = tiny_model(ModelConfig(arch="mlp", latent_dim=2, hidden=(16,)))
    train = TrainConfig(dataset="random", epochs=1, batch_size=32, device="cpu")
    history = fit(model, data, train).history
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name, value in (
        ("VAE_CHECKPOINT_DIR", folder),
        ("VAE_DATA_DIR", tmp_path),
        ("VAE_AUTOSAVE_DIR", tmp_path),
    ):
        monkeypatch.setenv(name, str(value))
    return save_trained(
        folder / "one-class.pt", model=model, data=data, train_config=train, history=history, sample_size=48
    )


def test_a_model_without_labels_gets_clear_messages(one_class_checkpoint: Path):
    at = select_model(app_test(GENERATE), one_class_checkpoint)
    assert any("have one class" in i.value for i in at.info)
    assert not at.metric
    at.switch_page(DIRECTIONS).run()
    assert_no_exception(at)
    assert at.radio(key="directions_groups").options == ["two selections on the map"]
    assert any("Both groups need" in i.value for i in at.info)


def test_the_walk_gif_is_big_enough_for_slides_and_the_strip_starts_at_t_minus_2():
    from vae_app import cache
    from vae_core.directions import attribute_direction, walk

    loaded = load_checkpoint(shipped("digits-mlp-8"))
    atlas = loaded.atlas
    direction = attribute_direction(atlas.mu[atlas.labels == 0], atlas.mu[atlas.labels == 1])
    z = atlas.mu[0]
    ts = (-2.0, 0.0, 2.0)
    png, gif = cache.attribute_walk(
        "key", atlas.data_key, loaded.model, z, direction, strip_t=ts, gif_t=ts, gif_scale=8
    )
    animation = Image.open(io.BytesIO(gif))
    assert animation.size == (28 * 8, 28 * 8) and animation.n_frames == 4  # there and back: 3 + 1
    strip = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    first = decode_latents(loaded.model, walk(z, direction, ts=np.array([-2.0])))[0, 0].numpy() * 255
    assert strip.shape == (28 * 4 + 4, 3 * 28 * 4 + 8)  # three tiles, 2-pixel white frames
    assert np.abs(strip[2 : 2 + 28 * 4 : 4, 2 : 2 + 28 * 4 : 4] - first).max() <= 1.0
