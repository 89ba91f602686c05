"""AppTest runs of the Insight pages: latent health, traversals, evaluate, compare, export."""

from __future__ import annotations

import csv
import io
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.app_support import TINY_MODELS, app_test, assert_no_exception, chart_spec, select_model
from tests.app_support import plotly_array as array
from tests.helpers import random_splits, tiny_model
from vae_app.figures import PLANE_TRACE
from vae_core.bundle import evaluation_sample, save_trained
from vae_core.checkpoints import load_checkpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.health import active_units_of, kl_per_dimension_of
from vae_core.inference import encode
from vae_core.saving import save_checkpoint
from vae_core.training import fit

PAGES = ("health", "traversals", "evaluate", "compare", "export")


def open_page(page: str, app_env: Path, model: str = "tiny-conv-4"):
    """Return an AppTest on ``page`` with the tiny checkpoint ``model`` selected."""
    return select_model(app_test(f"vae_app/views/{page}.py"), app_env / f"{model}.pt")


def image_urls(at) -> list[str]:
    return [img.url for element in at.get("image") for img in element.proto.imgs]


def captions(at) -> str:
    return "\n".join(c.value for c in at.caption)


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def number(text: str) -> float:
    """Return the number a metric shows, e.g. 512.34 from "512.34 nats"."""
    return float(text.split()[0].replace(",", ""))


def map_points(spec: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return a latent map's (atlas indices, coords (N, 2), -ELBO) over all its class traces, by index."""
    traces = [t for t in spec["data"] if "customdata" in t and t.get("name") != PLANE_TRACE]
    index = np.concatenate([array(t["customdata"]) for t in traces]).astype(int)
    elbo = np.concatenate([np.asarray(t["text"], dtype=float) for t in traces])
    coords = np.concatenate([np.column_stack([array(t["x"]), array(t["y"])]) for t in traces])
    order = np.argsort(index)
    return index[order], coords[order], elbo[order]


def ranked(at, end: str) -> list[tuple[int, float]]:
    """Return the (image index, -ELBO) pairs Evaluate's "most" or "least" typical gallery lists in its caption."""
    texts = [c.value for c in at.caption if c.value.startswith("In reading order: ")]
    assert len(texts) == 2  # the most typical gallery (left), then the least typical one
    return [(int(i), float(v)) for i, v in re.findall(r"#(\d+) (-?[\d.]+)", texts[0 if end == "most" else 1])]


@pytest.fixture
def distinct_samples(app_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request) -> Path:
    """tiny-conv-4 as in ``app_env``, and a tiny-mlp-2 that bundles 30 other images (other blobs).

    ``request.param`` False saves tiny-mlp-2 without a stored atlas, so the app computes it.
    """
    folder = tmp_path / "distinct"
    folder.mkdir()
    shutil.copy(app_env / "tiny-conv-4.pt", folder / "tiny-conv-4.pt")
    data = random_splits(n_train=64, n_test=30, seed=1)
    model = tiny_model(TINY_MODELS["tiny-mlp-2"])
    train = TrainConfig(dataset="random", epochs=1, batch_size=32, device="cpu")
    history = fit(model, data, train).history
    path = folder / "tiny-mlp-2.pt"
    if getattr(request, "param", True):
        save_trained(path, model=model, data=data, train_config=train, history=history, sample_size=30)
    else:
        sample = evaluation_sample(data, size=30)
        save_checkpoint(
            path,
            model=model,
            train_config=train,
            dataset="random",
            history=history,
            class_names=data.class_names,
            sample=sample,
        )
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(folder))
    return folder


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


def test_health_reads_kl_and_active_units_from_the_stored_atlas(app_env: Path):
    at = open_page("health", app_env)
    assert not at.status  # the stored atlas: nothing is encoded again
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    at.toggle(key="health_sort").set_value(False).run()
    np.testing.assert_allclose(
        array(chart_spec(at, 0)["data"][0]["y"]), kl_per_dimension_of(atlas.mu, atlas.logvar), rtol=1e-5
    )
    shown = metrics(at)
    # The bars add up to the mean of the per-image KL that makes up every page's -ELBO.
    assert number(shown["Total KL"]) == pytest.approx(float(atlas.kl.mean()), abs=0.01)
    assert shown["Active units"] == f"{active_units_of(atlas.mu).count} of 4"


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
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas  # the parts are the atlas's means
    assert (total, recon, kl) == pytest.approx(
        (atlas.elbo.mean(), atlas.recon.mean(), atlas.kl.mean()), abs=0.006
    )
    assert "4-sample Monte Carlo" in captions(at)  # the page says which estimator
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
    most = ranked(at, "most")
    least = ranked(at, "least")
    assert len(most) == len(least) == 16
    assert [v for _, v in most] == sorted(v for _, v in most)
    assert [v for _, v in least] == sorted((v for _, v in least), reverse=True)
    assert max(v for _, v in most) <= min(v for _, v in least)
    hist = chart_spec(at, 0)
    assert hist["data"][0]["type"] == "histogram" and len(array(hist["data"][0]["x"])) == 96
    links = at.get("page_link")
    assert links and "Encode" in links[0].proto.label


@pytest.mark.parametrize("distinct_samples", [True], indirect=True)
def test_a_small_set_splits_into_two_halves_that_never_overlap(distinct_samples: Path):
    at = open_page("evaluate", distinct_samples, "tiny-mlp-2")
    assert metrics(at)["Images"] == "30"
    titles = [m.value for m in at.markdown]
    assert "**15 most typical (lowest −ELBO, nats)**" in titles
    assert "**15 least typical (highest −ELBO, nats)**" in titles
    most = ranked(at, "most")
    least = ranked(at, "least")
    assert len(most) == len(least) == 15
    assert sorted(i for i, _ in most + least) == list(range(30))  # each image once, in one group


def test_an_image_has_the_same_elbo_on_the_latent_map_and_on_evaluate(app_env: Path):
    at = open_page("evaluate", app_env, "tiny-mlp-2")
    worst, value = ranked(at, "least")[0]
    at.switch_page("vae_app/views/latent_map.py")
    at.run()
    assert_no_exception(at)
    index, _, elbo = map_points(chart_spec(at))
    assert index.tolist() == list(range(96))
    assert f"{elbo[worst]:.1f}" == f"{value:.1f}"
    assert int(np.argmax(elbo)) == worst  # the least typical image is the map's highest -ELBO


# Compare ------------------------------------------------------------------------------------------------


def test_compare_two_tiny_models_shows_maps_a_table_and_reconstructions(app_env: Path):
    at = open_page("compare", app_env)
    assert at.selectbox(key="compare_a").value.endswith("tiny-conv-4.pt")  # the current model is A
    assert at.selectbox(key="compare_b").value.endswith("tiny-mlp-2.pt")
    assert len(at.get("plotly_chart")) == 3  # the two maps and the overlaid training histories (issue 11)
    # The same map as the Latent map page: A's stored t-SNE atlas, B's latent plane.
    assert chart_spec(at, 1)["layout"]["xaxis"]["title"]["text"] == "z0"  # a 2-D latent is shown directly
    assert chart_spec(at, 0)["layout"]["xaxis"]["title"]["text"] == "t-SNE 1"
    a = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    np.testing.assert_allclose(map_points(chart_spec(at, 0))[1], a.coords, atol=1e-5)
    table = at.table[0].value
    assert list(table.columns) == ["A: tiny-conv-4", "B: tiny-mlp-2"]
    assert table.loc["latent dimensions"].tolist() == ["4", "2"]
    assert table.loc["active units"].iloc[1].endswith("of 2")
    assert table.loc["−ELBO on these 96 images (nats)"].iloc[0] == f"{a.elbo.mean():.2f}"
    assert len(image_urls(at)) == 1

    at.selectbox(key="compare_b").set_value(at.selectbox(key="compare_a").value).run()
    assert "Pick two different checkpoints." in [w.value for w in at.warning]


@pytest.mark.parametrize("distinct_samples", [True, False], ids=["stored", "computed"], indirect=True)
def test_compare_keeps_model_bs_codes_of_as_images_apart_from_its_own(distinct_samples: Path):
    """Regression: Compare once cached B's codes of A's images under B's key; other pages then showed them."""
    a = load_checkpoint(distinct_samples / "tiny-conv-4.pt")
    b = load_checkpoint(distinct_samples / "tiny-mlp-2.pt")
    at = open_page("compare", distinct_samples, "tiny-conv-4")
    assert at.selectbox(key="compare_b").value.endswith("tiny-mlp-2.pt")
    index, coords, _ = map_points(chart_spec(at, 1))  # B's map of A's 96 images: B's codes of them
    np.testing.assert_allclose(coords, encode(b.model, a.sample.images).mu.numpy(), atol=1e-5)

    own = encode(b.model, b.sample.images).mu.numpy()
    select_model(at, distinct_samples / "tiny-mlp-2.pt")
    for page in ("latent_map", "evaluate"):
        at.switch_page(f"vae_app/views/{page}.py")
        at.run()
        assert_no_exception(at)
        if page == "latent_map":
            index, coords, elbo = map_points(chart_spec(at))
            assert index.tolist() == list(range(30))  # B's own 30 images, not A's 96
            np.testing.assert_allclose(coords, own, atol=1e-5)
            if b.atlas is not None:
                np.testing.assert_allclose(coords, b.atlas.mu, atol=1e-6)
        else:
            assert metrics(at)["Images"] == "30"
            assert number(metrics(at)["Test −ELBO"]) == pytest.approx(
                float(elbo.mean()), abs=0.05
            )  # map shows .1f


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
    # The CSV carries the atlas: mu, then each image's -ELBO and its place on the Latent map.
    atlas = load_checkpoint(app_env / "tiny-conv-4.pt").atlas
    rows = list(csv.reader(io.StringIO(blocks[3])))
    assert rows[0] == ["index", "label", "z0", "z1", "z2", "z3", "neg_elbo", "map_x", "map_y"]
    body = np.array(rows[1:], dtype=np.float64)
    np.testing.assert_allclose(body[:, 2:6], atlas.mu[: len(body)], rtol=1e-6)
    np.testing.assert_allclose(body[:, 6], atlas.elbo[: len(body)], rtol=1e-6)
    np.testing.assert_allclose(body[:, 7:9], atlas.coords[: len(body)], rtol=1e-6)
    vectors = np.array([line.split("\t") for line in blocks[1].splitlines()], dtype=np.float64)
    np.testing.assert_allclose(vectors, atlas.mu[: len(vectors)], rtol=1e-6)


# Every page -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_pages_explain_themselves_without_a_model(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(empty))
    monkeypatch.setenv("VAE_DATA_DIR", str(empty))
    at = app_test(f"vae_app/views/{page}.py")
    assert_no_exception(at)
    assert at.title[0].value
    assert at.info and ("Train" in at.info[0].value)
