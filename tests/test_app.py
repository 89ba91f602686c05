"""The frame (navigation, model picker) and the Home page, through Streamlit's AppTest."""

from pathlib import Path

from tests.app_support import app_test, assert_no_exception, select_model


def test_home_shows_the_model_its_samples_and_the_explanation(app_env: Path):
    at = app_test()
    assert_no_exception(at)
    assert at.title[0].value == "VAE latent-space explorer"
    labels = [m.label for m in at.metric]
    assert "Test −ELBO (nats)" in labels and "Architecture" in labels
    assert any("reparameterization" in md.value for md in at.markdown)
    assert len(at.sidebar.selectbox) == 1
    assert len(at.sidebar.selectbox[0].options) == 2


def test_new_samples_and_another_example_change_the_page(app_env: Path):
    at = app_test()
    before = [md.value for md in at.markdown if "reparameterization" in md.value]
    at.button(key="home_next_example").click().run()
    after = [md.value for md in at.markdown if "reparameterization" in md.value]
    assert before != after
    at.button(key="home_resample").click().run()
    assert at.session_state["home_seed"] == 1
    assert_no_exception(at)


def test_switching_the_model_changes_what_is_shown(app_env: Path):
    at = app_test()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Architecture"] == "CONV" and shown["Latent dimensions"] == "4"  # tiny-conv-4 sorts first
    # AppTest cannot drive the sidebar selectbox after a rerun; set the picker's state the way it does.
    select_model(at, app_env / "tiny-mlp-2.pt")
    shown = {m.label: m.value for m in at.metric}
    assert shown["Architecture"] == "MLP" and shown["Latent dimensions"] == "2"


def test_no_checkpoints_explains_how_to_get_a_model(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    at = app_test()
    assert_no_exception(at)
    assert any("No model is loaded" in i.value for i in at.info)


def test_a_corrupt_checkpoint_in_the_folder_is_named_not_raised(
    tmp_path: Path, monkeypatch, tiny_checkpoints
):
    (tmp_path / "good.pt").write_bytes((tiny_checkpoints / "tiny-mlp-2.pt").read_bytes())
    (tmp_path / "broken.pt").write_bytes(b"this is not a checkpoint")
    monkeypatch.setenv("VAE_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    at = app_test()
    assert_no_exception(at)
    assert any("broken.pt" in w.value for w in at.sidebar.warning)
    assert at.title[0].value == "VAE latent-space explorer"


def test_home_example_elbo_is_the_atlas_value(app_env: Path):
    from vae_core.checkpoints import load_checkpoint

    at = app_test()
    select_model(at, app_env / "tiny-mlp-2.pt")
    atlas = load_checkpoint(app_env / "tiny-mlp-2.pt").atlas
    for _ in range(2):  # the first example, then another one
        example = at.session_state["home_example"] % len(atlas)
        shown = next(m for m in at.metric if m.label == "−ELBO of this image (nats)")
        assert shown.value == f"{atlas.elbo[example]:.1f}"
        walkthrough = next(md.value for md in at.markdown if "reparameterization" in md.value)
        assert f"**{atlas.elbo[example]:.1f} nats**" in walkthrough  # the image's −ELBO is the atlas's
        assert "this one draw of ε" in walkthrough
        at.button(key="home_next_example").click().run()
        assert_no_exception(at)
