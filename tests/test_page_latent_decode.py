"""The Latent map and Decode pages through Streamlit's AppTest, on the two tiny checkpoints."""

from pathlib import Path

import numpy as np
import pytest

from tests.app_support import app_test, assert_no_exception, chart_by_key, chart_spec, select_model
from tests.app_support import plotly_array as array
from vae_core.checkpoints import load_checkpoint
from vae_core.inference import encode


def open_page(page: str, app_env: Path, model: str):
    """Return an AppTest on ``page`` with the tiny checkpoint ``model`` selected."""
    return select_model(app_test(page), app_env / f"{model}.pt")


def decoded_image(at) -> str:
    """Return the decoded image's inline PNG (the page sends it as a data URL inside an <img>)."""
    (html,) = [md.value for md in at.markdown if 'alt="The decoded image"' in md.value]
    return html.split('src="', 1)[1].split('"', 1)[0]


def log_prior_metric(at) -> str:
    return next(m.value for m in at.metric if m.label.startswith("log p(z)"))


def decode_sliders(at) -> list:
    """Return Decode's z sliders in the order drawn (ranked by KL)."""
    return [s for s in at.slider if s.key and s.key.startswith("decode_z") and s.key[8:].isdigit()]


def slider_values(at) -> list[float]:
    """Return the z sliders' values by dimension index (the page draws them ranked by KL)."""
    return [s.value for s in sorted(decode_sliders(at), key=lambda s: int(s.key[8:]))]


def marker_point(at) -> np.ndarray:
    """Return where the Decode page's map puts the current z, (2,)."""
    (trace,) = [t for t in chart_by_key(at, "decode_map")["data"] if t["name"] == "current z"]
    return np.array([array(trace["x"])[0], array(trace["y"])[0]])


# Latent map


def customdata(trace: dict) -> np.ndarray:
    """Return a class trace's (atlas index, -ELBO as shown) per point, (N, 2)."""
    return np.column_stack([array(trace["customdata"]), np.asarray(trace["text"], dtype=float)])


def test_latent_map_of_a_2d_latent_plots_z_directly_one_trace_per_class(app_env: Path):
    at = open_page("vae_app/views/latent_map.py", app_env, "tiny-mlp-2")
    assert at.radio(key="latent_map_view").value == "latent plane"
    spec = chart_spec(at)
    # the invisible click targets that make the plane clickable, beneath one trace per class
    assert [t["name"] for t in spec["data"]] == ["latent plane", "top", "bottom"]
    assert spec["layout"]["xaxis"]["title"]["text"] == "z0"
    plane, classes = spec["data"][0], spec["data"][1:]
    assert plane["marker"]["opacity"] == 0 and len(array(plane["x"])) == 60 * 60
    assert set(array(plane["customdata"]).tolist()) == {-1}  # never taken for an image
    # customdata carries the index into the whole sample, so a selection maps back across traces
    indices = np.sort(np.concatenate([customdata(t)[:, 0] for t in classes]))
    assert indices.tolist() == list(range(96))
    loaded = load_checkpoint(app_env / "tiny-mlp-2.pt")
    mu = encode(loaded.model, loaded.sample.images).mu
    first = classes[0]
    idx = customdata(first)[:, 0].astype(int)
    np.testing.assert_allclose(array(first["x"]), mu[idx, 0], atol=1e-5)
    # the stored atlas is what the map shows: its -ELBO per image rides along in customdata
    np.testing.assert_allclose(customdata(first)[:, 1], loaded.atlas.elbo[idx], atol=0.051)


def test_latent_map_of_a_4d_latent_opens_on_the_stored_t_sne_layout(app_env: Path):
    at = open_page("vae_app/views/latent_map.py", app_env, "tiny-conv-4")
    assert at.radio(key="latent_map_view").options == ["t-SNE (neighbours kept)", "PCA", "two chosen dims"]
    spec = chart_spec(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    assert not at.status  # the stored atlas: nothing is computed
    loaded = load_checkpoint(app_env / "tiny-conv-4.pt")
    first = spec["data"][0]
    idx = customdata(first)[:, 0].astype(int)
    np.testing.assert_allclose(array(first["x"]), loaded.atlas.coords[idx, 0], atol=1e-5)
    at.radio(key="latent_map_view").set_value("PCA").run()
    assert_no_exception(at)
    assert chart_spec(at)["layout"]["xaxis"]["title"]["text"] == "PC1"


def test_latent_map_two_chosen_dims_and_anomaly_colouring(app_env: Path):
    at = open_page("vae_app/views/latent_map.py", app_env, "tiny-conv-4")
    at.radio(key="latent_map_view").set_value("two chosen dims").run()
    at.selectbox(key="latent_map_dim_x").set_value(3).run()
    spec = chart_spec(at)
    assert (spec["layout"]["xaxis"]["title"]["text"], spec["layout"]["yaxis"]["title"]["text"]) == (
        "z3",
        "z1",
    )
    at.radio(key="latent_map_colour").set_value("−ELBO (anomaly score)").run()
    assert_no_exception(at)
    (trace,) = chart_spec(at)["data"]
    score = array(trace["marker"]["color"])
    assert len(score) == 96 and score.min() > 0
    at.selectbox(key="latent_map_dim_y").set_value(3).run()
    assert any("two different" in w.value for w in at.warning)


# Decode


def test_moving_a_slider_decodes_a_new_image(app_env: Path):
    at = open_page("vae_app/views/decode.py", app_env, "tiny-conv-4")
    assert slider_values(at) == [0.0, 0.0, 0.0, 0.0]
    before_image, before_logp = decoded_image(at), log_prior_metric(at)
    assert before_image.startswith("data:image/png;base64,")
    assert before_logp == f"{-2 * np.log(2 * np.pi):.2f} nats"  # log N(0; 0, I) in 4 dimensions
    at.slider(key="decode_z0").set_value(2.5).run()
    assert_no_exception(at)
    assert decoded_image(at) != before_image
    assert log_prior_metric(at) == f"{-2 * np.log(2 * np.pi) - 0.5 * 2.5**2:.2f} nats"
    assert at.session_state["decode_z"] == [2.5, 0.0, 0.0, 0.0]
    assert [b.label for b in at.get("download_button")] == ["Download PNG"]


def test_reset_random_draw_and_range(app_env: Path):
    at = open_page("vae_app/views/decode.py", app_env, "tiny-conv-4")
    at.button(key="decode_random").click().run()
    drawn = slider_values(at)
    assert any(v != 0 for v in drawn) and all(abs(v) <= 3 for v in drawn)
    at.button(key="decode_random").click().run()
    assert slider_values(at) != drawn  # a new draw each time
    at.button(key="decode_reset").click().run()
    assert slider_values(at) == [0.0, 0.0, 0.0, 0.0]
    at.slider(key="decode_z1").set_value(2.5).run()
    at.number_input(key="decode_range").set_value(1.0).run()  # narrowing the range clips the value, no error
    assert_no_exception(at)
    assert slider_values(at)[1] == 1.0
    assert at.slider(key="decode_z1").max == 1.0


def test_start_from_a_dataset_example_sets_the_sliders_to_its_mu(app_env: Path):
    at = open_page("vae_app/views/decode.py", app_env, "tiny-conv-4")
    loaded = load_checkpoint(app_env / "tiny-conv-4.pt")
    at.selectbox(key="decode_example_class").set_value(1).run()
    at.number_input(key="decode_example_index").set_value(2).run()
    at.button(key="decode_example_go").click().run()
    assert_no_exception(at)
    index = int(np.flatnonzero(loaded.sample.labels.numpy() == 1)[2])
    # The atlas's code of the image (the Latent map's), to the sliders' two decimals.
    np.testing.assert_allclose(slider_values(at), loaded.atlas.mu[index], atol=0.006)
    # The star sits on the image's own dot (placement by neighbours would put it only near it) ...
    np.testing.assert_allclose(marker_point(at), loaded.atlas.coords[index], atol=1e-5)
    # ... until a slider moves z away from that code.
    moved = float(np.clip(slider_values(at)[0] + 0.5, -3, 3))
    at.slider(key="decode_z0").set_value(moved).run()
    z = np.round(loaded.atlas.mu[index], 2)
    z[0] = moved
    np.testing.assert_allclose(marker_point(at), loaded.atlas.place(z)[0], atol=1e-5)


def test_the_map_marker_follows_the_sliders(app_env: Path):
    at = open_page("vae_app/views/decode.py", app_env, "tiny-conv-4")
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    spec = chart_by_key(at, "decode_map")
    assert [t["name"] for t in spec["data"]] == ["top", "bottom", "current z"]
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"  # the atlas's map, as on the Latent map page
    before = marker_point(at)
    np.testing.assert_allclose(before, atlas.place(np.zeros(4))[0], atol=1e-6)
    at.slider(key="decode_z1").set_value(-2.0).run()
    assert_no_exception(at)
    after = marker_point(at)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, atlas.place(np.array([0.0, -2.0, 0.0, 0.0]))[0], atol=1e-6)


def test_a_2d_model_shows_the_manifold_grid_and_a_new_model_resets_the_sliders(app_env: Path):
    at = open_page("vae_app/views/decode.py", app_env, "tiny-conv-4")
    at.slider(key="decode_z3").set_value(1.0).run()
    assert chart_by_key(at, "decode_grid_chart") is None  # the grid is opt-in above two dimensions
    at.toggle(key="decode_grid_show").set_value(True).run()
    assert chart_by_key(at, "decode_grid_chart")["layout"]["xaxis"]["title"]["text"] == "z0 →"
    select_model(at, app_env / "tiny-mlp-2.pt")
    assert slider_values(at) == [0.0, 0.0]
    # On a 2-D latent the shared map is the latent plane itself: the marker is z.
    assert marker_point(at).tolist() == [0.0, 0.0]
    assert chart_by_key(at, "decode_map")["layout"]["xaxis"]["title"]["text"] == "z0"
    spec = chart_by_key(at, "decode_grid_chart")
    assert spec["data"][0]["type"] == "image" and spec["data"][0]["source"].startswith("data:image/png")
    assert (spec["layout"]["xaxis"]["title"]["text"], spec["layout"]["yaxis"]["title"]["text"]) == (
        "z0 →",
        "z1 ↑",
    )
    assert array(spec["data"][1]["x"]).tolist() == [
        pytest.approx(7.5)
    ]  # z = 0 is the middle of the 15 x 15 grid
    assert any("Kingma" in c.value for c in at.caption)
