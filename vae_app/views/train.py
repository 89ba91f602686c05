"""Train: configure a VAE, train it in a background thread with live charts, stop it, save it."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

import ui
from vae_core.bundle import save_trained, test_metrics
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DATASETS, available_offline, dataset_info
from vae_core.imaging import image_grid
from vae_core.naming import checkpoint_path, sanitize_name
from vae_core.runs import RunCapacityError, RunSnapshot, TrainingRun

RUN_KEY, SAVED_KEY = "train_run", "train_saved"
NLL_K, NLL_IMAGES = 50, 500
TRAIN_COLOUR = "#4f46e5"
PANELS = (("total", "−ELBO (total)"), ("recon", "Reconstruction"), ("kl", "KL divergence"))

ui.ensure_framed(__file__)
st.title("Train a VAE")
st.caption(
    "Pick a dataset and a model, then press **Start training**. Training runs in the background: the chart "
    "shows the loss after every epoch (solid: training images, dashed: held-out test images), and the pictures "
    "show how well the model redraws test images and what it invents from random latent codes. You can visit "
    "other pages meanwhile; the run keeps going. When it ends, save the model to explore it on the other pages."
)
st.session_state.setdefault(RUN_KEY, None)
st.session_state.setdefault(SAVED_KEY, None)


def parse_sizes(text: str, what: str) -> tuple[int, ...]:
    """Read '512, 256' as (512, 256)."""
    try:
        sizes = tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {text!r}") from None
    if not sizes:
        raise ValueError(f"give at least one number for the {what}")
    return sizes


def settings_form(offline: list[str], loaded) -> dict | None:
    """Draw the settings form; return the values when Start was pressed."""
    with st.form("train_form"):
        names = list(DATASETS)
        default = "mnist" if "mnist" in offline else "digits"
        dataset = st.selectbox(
            "Dataset",
            names,
            index=names.index(default),
            key="train_dataset",
            format_func=lambda k: (
                f"{DATASETS[k].title} · " + ("on disk" if k in offline else "needs a download")
            ),
        )
        folder = st.text_input(
            "…or a folder of your own images",
            key="train_folder",
            placeholder="/path/to/images",
            help="One subfolder per class; images are converted to 28x28 greyscale.",
        )
        st.caption(f"Works offline now: {', '.join(offline)}, or a folder of your own images.")
        c1, c2 = st.columns(2)
        arch = c1.radio(
            "Architecture", ["mlp", "conv"], format_func=str.upper, horizontal=True, key="train_arch"
        )
        latent = c2.number_input("Latent dimensions", 1, 256, 8, key="train_latent")
        beta = c1.number_input("β (KL weight)", 0.0, 100.0, 1.0, step=0.1, key="train_beta")
        warmup = c2.number_input("KL warm-up epochs", 0, 1000, 0, key="train_warmup")
        epochs = c1.number_input("Epochs", 1, 1000, 5, key="train_epochs")
        batch = c2.number_input("Batch size", 1, 8192, 128, key="train_batch")
        lr = c1.number_input("Learning rate", 1e-6, 1.0, 1e-3, step=1e-4, format="%.4f", key="train_lr")
        seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="train_seed")
        likelihood = st.selectbox(
            "Likelihood",
            ["auto", "bernoulli", "gaussian"],
            key="train_likelihood",
            format_func=lambda v: "auto (from the dataset)" if v == "auto" else v,
            help="Bernoulli for greyscale digits and clothes, Gaussian for colour photos (CIFAR-10).",
        )
        binarize = st.checkbox("Dynamic binarization (Bernoulli models)", key="train_binarize")
        resume = st.checkbox(
            f"Continue training the current model ({loaded.info.name}, {loaded.info.epochs} epochs)"
            if loaded is not None
            else "Continue training the current model (none loaded)",
            disabled=loaded is None,
            key="train_resume",
            help="Keeps its architecture, latent size, β and dataset; new epochs add to its history. "
            "The saved original is not changed.",
        )
        with st.expander("Advanced"):
            hidden = st.text_input("MLP hidden layer widths", "400", key="train_hidden")
            channels = st.text_input(
                "Conv channels (one stride-2 layer each)", "32, 64", key="train_channels"
            )
            limit = st.number_input(
                "Use at most this many training images (0: all)", 0, 10**7, 0, key="train_limit"
            )
            device = st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="train_device")
        if not st.form_submit_button(
            "Start training", type="primary", icon=":material/play_arrow:", width="stretch"
        ):
            return None
    return dict(
        dataset=f"folder:{folder.strip()}" if folder.strip() else dataset,
        arch=arch,
        latent=int(latent),
        beta=float(beta),
        warmup=int(warmup),
        epochs=int(epochs),
        batch=int(batch),
        lr=float(lr),
        seed=int(seed),
        likelihood=likelihood,
        binarize=binarize,
        resume=resume,
        hidden=hidden,
        channels=channels,
        limit=int(limit) or None,
        device=device,
    )


def build_run(v: dict, loaded) -> TrainingRun:
    """Turn the form's values into a run that trains its own model (a copy when resuming)."""
    init_state, history = None, ()
    if v["resume"] and loaded is not None:
        model_config, dataset = loaded.info.model_config, loaded.info.dataset
        # A copy: the cached model is shared by every session and must never change.
        init_state = {k: t.clone() for k, t in loaded.model.state_dict().items()}
        history = loaded.info.history
    else:
        dataset, info = v["dataset"], dataset_info(v["dataset"])
        model_config = ModelConfig(
            image_shape=info.image_shape,
            latent_dim=v["latent"],
            arch=v["arch"],
            hidden=parse_sizes(v["hidden"], "MLP hidden widths"),
            channels=parse_sizes(v["channels"], "channels"),
            likelihood=info.likelihood if v["likelihood"] == "auto" else v["likelihood"],
            beta=v["beta"],
        )
    train_config = TrainConfig(
        dataset=dataset,
        epochs=v["epochs"],
        batch_size=v["batch"],
        lr=v["lr"],
        kl_warmup_epochs=v["warmup"],
        seed=v["seed"],
        device=v["device"],
        binarize=v["binarize"],
        max_train_images=v["limit"],
    )
    return TrainingRun(
        model_config,
        train_config,
        init_state=init_state,
        history=history,
        keep_going=ui.session_alive_check(),
    )


def loss_figure(history: tuple[dict, ...]) -> go.Figure:
    """Three panels (total, reconstruction, KL) against epoch; solid train, dashed test."""
    fig = make_subplots(
        rows=1, cols=3, subplot_titles=[title for _, title in PANELS], horizontal_spacing=0.07
    )
    epochs = [int(r["epoch"]) for r in history]
    for col, (key, _) in enumerate(PANELS, start=1):
        for split, prefix, dash in (("train", "train", "solid"), ("test", "val", "dash")):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[r[f"{prefix}_{key}"] for r in history],
                    mode="lines+markers",
                    name=split,
                    line={"color": TRAIN_COLOUR if split == "train" else "#f97316", "dash": dash},
                    legendgroup=split,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        fig.update_xaxes(title_text="epoch", row=1, col=col, dtick=max(1, -(-len(epochs) // 5)))
    fig.update_yaxes(title_text="nats per image", row=1, col=1)
    fig.update_layout(
        height=320, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.25}
    )
    return fig


def outcome(snap: RunSnapshot) -> None:
    """Say how the run ended, in plain words."""
    epochs = len(snap.history)
    if snap.status == "finished":
        st.success(f"Finished: {epochs} epochs trained. Save the model below to explore it.")
    elif snap.status == "stopped":
        st.info(f"Stopped. Kept the model after epoch {epochs}, the last complete epoch.")
    elif snap.status == "failed":
        error = snap.error or "unknown error"
        if error.startswith("DatasetUnavailable: "):
            st.error(error.removeprefix("DatasetUnavailable: ").replace("\n", "  \n"))
            st.info(
                f"Datasets that work offline now: **{', '.join(available_offline())}**. Pick one and start again."
            )
        elif "non-finite" in snap.message:
            st.error(f"Training stopped because the loss became infinite or NaN. {error}")
        else:
            st.error(f"Training failed: {error}")


def draw_run(run: TrainingRun, was_live: bool) -> None:
    """Draw the run's progress; rerun the whole page once when it ends, so the Save section appears."""
    snap = run.snapshot()
    if was_live and snap.done:
        st.rerun(scope="app")
    if snap.status in ("pending", "loading"):
        text = f"Loading {run.train_config.dataset} …"
    elif snap.done:
        text = f"{len(snap.history)} of {snap.epochs} epochs trained"
    else:
        text = f"Epoch {snap.epoch} of {snap.epochs} · step {snap.step} of {snap.steps_per_epoch}"
    # Two containers, so the chart and pictures keep their places whatever the status lines above them say.
    head, body = st.container(), st.container()
    head.progress(snap.progress, text=text)
    if not snap.done and head.button("Stop", key="train_stop", icon=":material/stop:"):
        run.stop()
        head.caption("Stopping at the next step; the model keeps its last complete epoch.")
    if snap.done:
        with head:
            outcome(snap)
    with body:
        draw_results(snap)


def draw_results(snap: RunSnapshot) -> None:
    """Draw the latest figures, the loss chart, reconstructions and prior samples."""
    if snap.history:
        last = snap.history[-1]
        previous = snap.history[-2]["val_total"] if len(snap.history) > 1 else None
        cols = st.columns(4)
        cols[0].metric("Epoch", int(last["epoch"]))
        cols[1].metric(
            "Test −ELBO (nats)",
            f"{last['val_total']:.1f}",
            delta=None if previous is None else f"{last['val_total'] - previous:+.1f}",
            delta_color="inverse",
        )
        cols[2].metric("Test KL (nats)", f"{last['val_kl']:.1f}")
        cols[3].metric("Images per second", f"{last['images_per_second']:,.0f}")
        st.plotly_chart(loss_figure(snap.history), key="train_chart")
    if snap.reconstructions is not None and snap.originals is not None:
        st.image(
            image_grid(
                np.concatenate([snap.originals, snap.reconstructions]), ncols=len(snap.originals), scale=2
            ),
            caption="Top: test images. Bottom: the model's reconstructions after the latest epoch.",
        )
        st.image(
            image_grid(snap.samples, ncols=8, scale=2),
            caption="Decoded from 16 fixed random codes z ~ N(0, I): watch them sharpen epoch by epoch.",
        )
    elif not snap.done:
        st.caption("Reconstructions and samples appear after the first epoch.")


def save_section(run: TrainingRun, snap: RunSnapshot) -> None:
    """Offer to save a run that ended with at least one good epoch."""
    good = snap.status in ("finished", "stopped") or "non-finite" in snap.message
    if run.model is None or run.data is None or not snap.history or not good:
        return
    st.subheader("Save this model")
    cfg = run.model_config
    source = run.train_config.dataset.rstrip("/").split("/")[-1]
    name = st.text_input("Name", f"{source}-{cfg.arch}-{cfg.latent_dim}", key="train_save_name")
    folder = ui.checkpoint_dir()
    try:
        st.caption(f"Will be saved as `{folder.name}/{sanitize_name(name)}.pt`.")
    except ValueError as exc:
        st.caption(f"Not a usable name: {exc}.")
    # A fresh checkbox after every save, so "replace" never stays ticked for the next name.
    saves = st.session_state.setdefault("train_save_count", 0)
    overwrite = st.checkbox("Replace a model of the same name", key=f"train_save_overwrite_{saves}")
    if not st.button("Save model", key="train_save", type="primary", icon=":material/save:"):
        return
    path = None
    with ui.guard("save the model"):
        target = checkpoint_path(folder, name, overwrite=overwrite, allow_shipped=False)
        n = len(run.data.test_x)
        bar = st.progress(0.0, text="Importance-weighted NLL")
        with st.spinner(
            f"Measuring test figures: −ELBO on {n:,} test images and the importance-weighted NLL with "
            f"K = {NLL_K} samples on {min(n, NLL_IMAGES):,} of them …"
        ):
            metrics = test_metrics(
                run.model, run.data.test_x, nll_k=NLL_K, nll_images=NLL_IMAGES, on_progress=bar.progress
            )
        path = save_trained(
            target,
            model=run.model,
            data=run.data,
            train_config=run.train_config,
            history=snap.history,
            metrics=metrics,
        )
    if path is not None:
        ui.select_model_file(path)
        st.session_state[SAVED_KEY] = str(path)
        st.session_state["train_save_count"] = saves + 1
        st.rerun()  # the sidebar lists the new file and shows it as the current model


offline = available_offline()
loaded = ui.current_model()
settings, live = st.columns([1, 2], gap="large")
with settings:
    request = settings_form(offline, loaded)
    if request is not None:
        current = st.session_state[RUN_KEY]
        if current is not None and current.alive:
            st.warning("A run is still going in this session. Stop it first, then start a new one.")
        else:
            with ui.guard("start training"):
                new_run = build_run(request, loaded)
                name = new_run.train_config.dataset
                if name in DATASETS and name not in offline:
                    st.info(
                        f"{DATASETS[name].title} is not on disk, so the run first tries to download it. "
                        f"Works offline now: {', '.join(offline)}."
                    )
                try:
                    new_run.start()
                except RunCapacityError as exc:
                    st.warning(f"Training did not start: {exc}.")
                else:
                    st.session_state[RUN_KEY] = new_run
                    st.session_state[SAVED_KEY] = None

with live:
    run = st.session_state[RUN_KEY]
    if run is None:
        st.info("No run yet. Choose the settings on the left and press **Start training**.")
    else:
        snap = run.snapshot()
        st.fragment(run_every=None if snap.done else 1.0)(draw_run)(run, not snap.done)
        snap = run.snapshot()
        if snap.done:
            save_section(run, snap)
        if st.session_state[SAVED_KEY]:
            st.success(
                f"Saved to `{st.session_state[SAVED_KEY]}`. It is now the current model in the sidebar, "
                "so every page shows it."
            )
            st.page_link("pages/latent_map.py", label="See its latent map", icon=":material/scatter_plot:")
