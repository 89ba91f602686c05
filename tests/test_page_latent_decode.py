"""The Latent map and Decode pages through Streamlit's AppTest, on the two tiny checkpoints."""

from pathlib import Path

import numpy as np
import pytest

from tests.app_support import app_test, assert_no_exception, chart_spec, select_model
from tests.app_support import plotly_array as array
from vae_core.checkpoints import load_checkpoint
from vae_core.inference import encode, projection_cache


def open_page(page: str, app_env: Path, model: str):
    """Return an AppTest on ``page`` with the tiny checkpoint ``model`` selected."""
    return select_model(app_test(page), app_env / f"{model}.pt")


def decoded_image(at) -> str:
    """Return the decoded image's inline PNG (the page sends it as a data URL inside an <img>)."""
    (html,) = [md.value for md in at.markdown if 'alt="The decoded image"' in md.value]
    return html.split('src="', 1)[1].split('"', 1)[0]


def log_prior_metric(at) -> str:
    return next(m.value for m in at.metric if m.label.startswith("log p(z)"))


def slider_values(at) -> list[float]:
    return [s.value for s in at.slider if s.key and s.key.startswith("decode_z")]


# Latent map


def test_latent_map_of_a_2d_latent_plots_z_directly_one_trace_per_class(app_env: Path):
    at = open_page("pages/latent_map.py", app_env, "tiny-mlp-2")
    assert at.radio(key="latent_map_method").value == "direct"
    assert at.number_input(key="latent_map_n").value == 96  # all of the bundled sample, under 2,000
    spec = chart_spec(at)
    assert [t["name"] for t in spec["data"]] == ["top", "bottom"]
    assert spec["layout"]["xaxis"]["title"]["text"] == "z0"
    # customdata carries the index into the whole sample, so a selection maps back across traces
    indices = np.sort(np.concatenate([array(t["customdata"]) for t in spec["data"]]))
    assert indices.tolist() == list(range(96))
    mu = encode(
        load_checkpoint(app_env / "tiny-mlp-2.pt").model,
        load_checkpoint(app_env / "tiny-mlp-2.pt").sample.images,
    ).mu
    first = spec["data"][0]
    np.testing.assert_allclose(array(first["x"]), mu[array(first["customdata"]), 0], atol=1e-5)


def test_latent_map_of_a_4d_latent_offers_pca_and_t_sne_with_a_cached_repeat(app_env: Path):
    at = open_page("pages/latent_map.py", app_env, "tiny-conv-4")
    assert at.radio(key="latent_map_method").options == ["PCA", "t-SNE", "two chosen dims"]
    assert chart_spec(at)["layout"]["xaxis"]["title"]["text"].startswith("PC1")
    at.number_input(key="latent_map_n").set_value(40).run()
    at.radio(key="latent_map_method").set_value("t-SNE").run()
    at.slider(key="latent_map_perplexity").set_value(5).run()
    assert_no_exception(at)
    spec = chart_spec(at)
    assert spec["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    assert sum(len(array(t["x"])) for t in spec["data"]) == 40
    assert any(s.label.startswith("t-SNE of 40 codes took") for s in at.status)
    cached = len(projection_cache)
    at.run()  # the repeat view comes from the cache: nothing new is computed, no progress box
    assert len(projection_cache) == cached
    assert not at.status
    assert_no_exception(at)


def test_latent_map_two_chosen_dims_and_anomaly_colouring(app_env: Path):
    at = open_page("pages/latent_map.py", app_env, "tiny-conv-4")
    at.radio(key="latent_map_method").set_value("two chosen dims").run()
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
    at = open_page("pages/decode.py", app_env, "tiny-conv-4")
    assert slider_values(at) == [0.0, 0.0, 0.0, 0.0]
    before_image, before_logp = decoded_image(at), log_prior_metric(at)
    assert before_image.startswith("data:image/png;base64,")
    assert before_logp == f"{-2 * np.log(2 * np.pi):.2f} nats"  # log N(0; 0, I) in 4 dimensions
    at.slider(key="decode_z0").set_value(2.5).run()
    assert_no_exception(at)
    assert decoded_image(at) != before_image
    assert log_prior_metric(at) == f"{-2 * np.log(2 * np.pi) - 0.5 * 2.5**2:.2f} nats"
    assert at.session_state["decode_z"] == [2.5, 0.0, 0.0, 0.0]


def test_reset_random_draw_and_range(app_env: Path):
    at = open_page("pages/decode.py", app_env, "tiny-conv-4")
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
    at = open_page("pages/decode.py", app_env, "tiny-conv-4")
    loaded = load_checkpoint(app_env / "tiny-conv-4.pt")
    at.selectbox(key="decode_example_class").set_value(1).run()
    at.number_input(key="decode_example_index").set_value(2).run()
    at.button(key="decode_example_go").click().run()
    assert_no_exception(at)
    index = int(np.flatnonzero(loaded.sample.labels.numpy() == 1)[2])
    mu = encode(loaded.model, loaded.sample.images[index : index + 1]).mu[0].numpy()
    np.testing.assert_allclose(slider_values(at), mu, atol=0.006)


def test_a_2d_model_shows_the_manifold_grid_and_a_new_model_resets_the_sliders(app_env: Path):
    at = open_page("pages/decode.py", app_env, "tiny-conv-4")
    at.slider(key="decode_z3").set_value(1.0).run()
    assert not at.get("plotly_chart")  # the grid is opt-in above two dimensions
    at.toggle(key="decode_grid_show").set_value(True).run()
    assert chart_spec(at)["layout"]["xaxis"]["title"]["text"] == "z0 →"
    select_model(at, app_env / "tiny-mlp-2.pt")
    assert slider_values(at) == [0.0, 0.0]
    spec = chart_spec(at)
    assert spec["data"][0]["type"] == "image" and spec["data"][0]["source"].startswith("data:image/png")
    assert (spec["layout"]["xaxis"]["title"]["text"], spec["layout"]["yaxis"]["title"]["text"]) == (
        "z0 →",
        "z1 ↑",
    )
    assert array(spec["data"][1]["x"]).tolist() == [
        pytest.approx(7.5)
    ]  # z = 0 is the middle of the 15 x 15 grid
    assert any("Kingma" in c.value for c in at.caption)
