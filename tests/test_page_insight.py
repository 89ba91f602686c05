"""AppTest runs of the Insight pages: latent health, traversals, evaluate, compare, export."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.app_support import app_test, assert_no_exception, chart_spec, select_model
from tests.app_support import plotly_array as array
from tests.helpers import random_splits, tiny_model
from vae_core.bundle import save_trained
from vae_core.config import ModelConfig, TrainConfig
from vae_core.training import fit

PAGES = ("health", "traversals", "evaluate", "compare", "export")


def open_page(page: str, app_env: Path, model: str = "tiny-conv-4"):
    """Return an AppTest on ``page`` with the tiny checkpoint ``model`` selected."""
    return select_model(app_test(f"pages/{page}.py"), app_env / f"{model}.pt")


def image_urls(at) -> list[str]:
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


# Latent health ------------------------------------------------------------------------------------------


def test_health_shows_kl_active_units_and_a_verdict(app_env: Path):
    at = open_page("health", app_env)
    shown = metrics(at)
    assert shown["Active units"].endswith("of 4") and shown["Total KL"].endswith("nats")
    assert len(at.warning) + len(at.success) >= 1  # a plain-language verdict either way
    kl_chart, au_chart, hist_chart = (chart_spec(at, i) for i in range(3))
    kl = array(kl_chart["data"][0]["y"])
    assert (np.diff(kl) <= 0).all()  # sorted by KL by default
    assert kl.sum() == pytest.approx(float(shown["Total KL"].split()[0]), abs=0.01)
    assert au_chart["layout"]["yaxis"]["type"] == "log"
    assert au_chart["layout"]["shapes"][0]["y0"] == pytest.approx(0.01)  # the threshold line
    # One histogram and one prior curve per dimension.
    assert [t["type"] for t in hist_chart["data"]].count("bar") == 4
    assert [t["name"] for t in hist_chart["data"]].count("prior N(0, 1)") == 4

    at.toggle(key="health_sort").set_value(False).run()
    assert chart_spec(at)["data"][0]["x"] == ["z0", "z1", "z2", "z3"]


def test_health_new_samples_redraws_both_grids(app_env: Path):
    at = open_page("health", app_env, "tiny-mlp-2")
    assert metrics(at)["Active units"].endswith("of 2")
    before = image_urls(at)
    assert len(before) == 2
    at.button(key="health_resample").click().run()
    assert_no_exception(at)
    assert at.session_state["health_seed"] == 1
    after = image_urls(at)
    assert after[0] != before[0] and after[1] != before[1]


# Traversals ---------------------------------------------------------------------------------------------


def test_traversal_steps_rows_and_example_change_the_grid(app_env: Path):
    at = open_page("traversals", app_env)
    assert "4 of 4 dimensions × 9 steps" in captions(at)
    assert [b.proto.label for b in at.get("download_button")] == ["Download PNG", "Download GIF"]
    sheet = image_urls(at)[-1]
    assert sheet.endswith(".png")

    at.slider(key="traversals_steps").set_value(5).run()
    assert_no_exception(at)
    assert "4 of 4 dimensions × 5 steps" in captions(at)
    assert image_urls(at)[-1] != sheet

    at.slider(key="traversals_rows").set_value(2).run()
    assert "2 of 4 dimensions × 5 steps" in captions(at)

    at.selectbox(key="traversals_class").set_value(1).run()
    at.number_input(key="traversals_index").set_value(3).run()
    assert_no_exception(at)
    example = at.get("image")[0].proto.imgs[0].caption
    assert example.startswith("The example: test image #") and example.endswith("(bottom)")


def test_traversals_of_a_2d_model(app_env: Path):
    at = open_page("traversals", app_env, "tiny-mlp-2")
    assert "2 of 2 dimensions × 9 steps" in captions(at)
    at.slider(key="traversals_width").set_value(1.0).run()
    assert_no_exception(at)
    assert "from −1 to +1 standard deviations" in captions(at)


# Evaluate -----------------------------------------------------------------------------------------------


def test_evaluate_shows_the_elbo_and_runs_the_nll_with_a_chosen_k(app_env: Path):
    at = open_page("evaluate", app_env)
    shown = metrics(at)
    total, recon, kl = (float(shown[k].split()[0]) for k in ("Test −ELBO", "Reconstruction", "KL"))
    assert total == pytest.approx(recon + kl, abs=0.02)
    assert any("96 × 100 = **9,600 decodes**" in m.value for m in at.markdown)

    at.select_slider(key="evaluate_k").set_value(10).run()
    at.selectbox(key="evaluate_n").set_value(96).run()
    assert any("96 × 10 = **960 decodes**" in m.value for m in at.markdown)
    at.button(key="evaluate_run").click().run()
    assert_no_exception(at)
    nll = metrics(at)["NLL, K = 10"]
    assert math.isfinite(float(nll.split()[0]))
    assert (at.session_state["evaluate_nll"]).keys()
    # Random blobs are not MNIST: the literature bars are left out with a note.
    assert "Published reference figures exist for MNIST" in captions(at)


def test_evaluate_ranks_the_images_and_links_to_the_encode_page(app_env: Path):
    at = open_page("evaluate", app_env, "tiny-mlp-2")
    labels = [m.value for m in at.markdown]
    assert "**16 most typical (lowest −ELBO, nats)**" in labels
    assert "**16 least typical (highest −ELBO, nats)**" in labels
    hist = chart_spec(at, 0)
    assert hist["data"][0]["type"] == "histogram" and len(array(hist["data"][0]["x"])) == 96
    links = at.get("page_link")
    assert links and "Encode" in links[0].proto.label


# Compare ------------------------------------------------------------------------------------------------


def test_compare_two_tiny_models_shows_maps_a_table_and_reconstructions(app_env: Path):
    at = open_page("compare", app_env)
    assert at.selectbox(key="compare_a").value.endswith("tiny-conv-4.pt")  # the current model is A
    assert at.selectbox(key="compare_b").value.endswith("tiny-mlp-2.pt")
    assert len(at.get("plotly_chart")) == 2
    assert chart_spec(at, 1)["layout"]["xaxis"]["title"]["text"] == "z0"  # a 2-D latent is shown directly
    assert "PC1" in chart_spec(at, 0)["layout"]["xaxis"]["title"]["text"]
    table = at.table[0].value
    assert list(table.columns) == ["A: tiny-conv-4", "B: tiny-mlp-2"]
    assert table.loc["latent dimensions"].tolist() == ["4", "2"]
    assert table.loc["active units"].iloc[1].endswith("of 2")
    assert len(image_urls(at)) == 1

    at.number_input(key="compare_n").set_value(20).run()
    assert_no_exception(at)
    assert "−ELBO on these 20 images (nats)" in at.table[0].value.index

    at.selectbox(key="compare_b").set_value(at.selectbox(key="compare_a").value).run()
    assert "Pick two different checkpoints." in [w.value for w in at.warning]


@pytest.fixture
def mixed_shapes(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkpoint folder with a 28x28 model and an 8x8 one."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(app_env / "tiny-mlp-2.pt", folder / "tiny-mlp-2.pt")
    data = random_splits(n_train=32, n_test=16, shape=(1, 8, 8))
    model = tiny_model(ModelConfig(image_shape=(1, 8, 8), arch="mlp", latent_dim=2, hidden=(16,)))
    train = TrainConfig(dataset="random", epochs=1, batch_size=16, device="cpu")
    history = fit(model, data, train).history
    save_trained(
        folder / "small-8.pt", model=model, data=data, train_config=train, history=history, sample_size=16
    )
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(folder))
    return folder


def test_compare_refuses_models_of_different_image_shapes(mixed_shapes: Path):
    at = open_page("compare", mixed_shapes, "tiny-mlp-2")
    assert_no_exception(at)
    errors = [e.value for e in at.error]
    assert errors and "read different images" in errors[0] and "8×8" in errors[0]
    assert not at.table


# Export -------------------------------------------------------------------------------------------------


def test_export_offers_the_projector_zip_and_csv_for_n_images(app_env: Path):
    at = open_page("export", app_env)
    assert [b.proto.label for b in at.get("download_button")] == [
        "Embedding Projector files (.zip)",
        "Latents as CSV",
    ]
    assert "96 images × 4 latent dimensions" in captions(at)
    at.number_input(key="export_n").set_value(10).run()
    assert_no_exception(at)
    assert "10 images × 4 latent dimensions" in captions(at)
    blocks = [c.value for c in at.code]
    assert blocks[0].splitlines()[0] == "index\tlabel\tclass"
    assert len(blocks[1].splitlines()[0].split("\t")) == 4  # one vector of 4 numbers per line
    assert 'tensor_path: "vectors.tsv"' in blocks[2] and "tensor_shape: 10" in blocks[2]


# Every page -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_pages_explain_themselves_without_a_model(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(empty))
    monkeypatch.setenv("VAE_DATA_DIR", str(empty))
    at = app_test(f"pages/{page}.py")
    assert_no_exception(at)
    assert at.title[0].value
    assert at.info and ("Train" in at.info[0].value)
