"""The Train page's settings form, and the training run it describes."""

from __future__ import annotations

import streamlit as st

from vae_app import own_images, state, train_run
from vae_app.escape import md
from vae_app.widgets import guard
from vae_core.checkpoints import LoadedCheckpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DATASETS, dataset_info
from vae_core.limits import check_training
from vae_core.runs import RunCapacityError, TrainingRun

# Six significant digits: the smallest rate (1e-6) reads "0.000001" in the field, not "0.0000".
LR_FORMAT = "%.6g"
SEED_MAX = 2**31 - 1
# (label, form key, lowest, highest) of the numbers whose range no config checks.
NUMBER_RANGES = (("The learning rate", "lr", 1e-6, 1.0), ("The seed", "seed", 0, SEED_MAX))


def parse_sizes(text: str, what: str) -> tuple[int, ...]:
    """Read '512, 256' as (512, 256); raise ValueError with a readable message otherwise."""
    try:
        sizes = tuple(int(part) for part in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{what} must be whole numbers separated by commas, got {text!r}") from None
    if not sizes:
        raise ValueError(f"give at least one number for the {what}")
    return sizes


def settings_form(offline: list[str], loaded: LoadedCheckpoint | None) -> dict | None:
    """Draw the training settings form; return its values when Start was pressed, else None."""
    with st.form("train_form"):
        names = list(DATASETS)
        dataset = st.selectbox(
            "Dataset",
            names,
            index=names.index("mnist" if "mnist" in offline else "digits"),
            key="train_dataset",
            format_func=lambda k: (
                f"{DATASETS[k].title} · " + ("on disk" if k in offline else "needs a download")
            ),
        )
        folder = st.text_input(
            "…or a folder of your own images",
            key="train_folder",
            placeholder="/path/to/images",
            help=own_images.folder_help(),
            disabled=not own_images.folder_roots(),
        )
        archive = st.file_uploader(
            "…or a zip of your own images",
            type=["zip"],
            key="train_zip",
            help="One folder per class inside the zip; images are converted to 28x28 greyscale.",
        )
        st.caption(f"Works offline now: {', '.join(offline)}, or your own images.")
        c1, c2 = st.columns(2)
        arch = c1.radio(
            "Architecture", ["mlp", "conv"], format_func=str.upper, horizontal=True, key="train_arch"
        )
        # No min or max on these fields: the browser would refuse an out-of-range value by silently
        # not starting; check_numbers and the configs refuse it with a message instead.
        latent = c2.number_input("Latent dimensions", value=8, key="train_latent")
        beta = c1.number_input("β (KL weight)", value=1.0, step=0.1, key="train_beta")
        warmup = c2.number_input("KL warm-up epochs", value=0, key="train_warmup")
        epochs = c1.number_input("Epochs", value=5, key="train_epochs")
        batch = c2.number_input("Batch size", value=128, key="train_batch")
        lr = c1.number_input("Learning rate", value=1e-3, step=1e-4, format=LR_FORMAT, key="train_lr")
        seed = c2.number_input("Seed", value=0, key="train_seed")
        likelihood = st.selectbox(
            "Likelihood",
            ["auto", "bernoulli", "gaussian"],
            key="train_likelihood",
            format_func=lambda v: "auto (from the dataset)" if v == "auto" else v,
            help="Bernoulli for greyscale digits and clothes, Gaussian for colour photos (CIFAR-10).",
        )
        binarize = st.checkbox("Dynamic binarization (Bernoulli models)", key="train_binarize")
        current = (
            f"{md(loaded.info.name)}, {loaded.info.epochs} epochs" if loaded is not None else "none loaded"
        )
        resume = st.checkbox(
            f"Continue training the current model ({current})",
            disabled=loaded is None,
            key="train_resume",
            help="Keeps its architecture, latent size, β and dataset; new epochs add to its history and its "
            "training timeline. The saved original is not changed.",
        )
        with st.expander("Advanced"):
            hidden = st.text_input("MLP hidden layer widths", "400", key="train_hidden")
            channels = st.text_input(
                "Conv channels (one stride-2 layer each)", "32, 64", key="train_channels"
            )
            limit = st.number_input(
                "Use at most this many training images (0: all)", value=0, key="train_limit"
            )
            device = st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="train_device")
        pressed = st.form_submit_button(
            "Start training", type="primary", icon=":material/play_arrow:", width="stretch"
        )
    if not pressed:
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
        resume=resume and loaded is not None,
        hidden=hidden,
        channels=channels,
        limit=int(limit) or None,
        device=device,
        archive=archive,
    )


def check_numbers(v: dict) -> None:
    """Refuse the form's numbers that no config checks, naming the field (the configs check the rest)."""

    def show(x: float) -> str:
        return f"{x:,}" if isinstance(x, int) else f"{x:g}"

    for label, key, low, high in NUMBER_RANGES:
        if not low <= v[key] <= high:
            raise ValueError(f"{label} must be between {show(low)} and {show(high)}, got {show(v[key])}")
    if v["limit"] is not None and v["limit"] < 0:
        raise ValueError(f"the number of training images must be 0 (all) or more, got {v['limit']:,}")


def build_run(v: dict, loaded: LoadedCheckpoint | None) -> TrainingRun:
    """Turn the form's values into a run that trains its own model (a copy of the current one when resuming).

    Raises:
        ValueError: A value is out of range or past a limit (``vae_core.limits``), before any
            data is read or model built.
    """
    check_numbers(v)
    init_state, history, timeline = None, (), None
    roots = own_images.session_roots()  # a folder dataset is read only below these
    if v["resume"]:
        model_config, dataset = loaded.info.model_config, loaded.info.dataset
        # A copy: the cached model is shared by every session and must never change.
        init_state = {k: t.clone() for k, t in loaded.model.state_dict().items()}
        history, timeline = loaded.info.history, loaded.timeline
    else:
        info = dataset_info(v["dataset"], folder_roots=roots)
        dataset = info.name
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
    check_training(model_config, train_config)
    return TrainingRun(
        model_config,
        train_config,
        init_state=init_state,
        history=history,
        timeline=timeline,
        keep_going=state.session_alive_check(),
        autosave=train_run.new_autosaver(),
        folder_roots=roots,
    )


def start(request: dict, loaded: LoadedCheckpoint | None, offline: list[str]) -> bool:
    """Build and start the run the form asked for; explain any refusal; return whether it started."""
    current = st.session_state.get(train_run.RUN_KEY)
    if current is not None and current.alive:
        st.warning("A run is still going in this session. Stop it first, then start a new one.")
        return False
    with guard("start training"):
        if request.get("archive") is not None and not request["resume"]:
            if request["dataset"].startswith("folder:"):
                raise ValueError("give either a folder or a zip of your images, not both")
            request = {**request, "dataset": own_images.zip_dataset(request["archive"])}
        run = build_run(request, loaded)
        name = run.train_config.dataset
        if name in DATASETS and name not in offline:
            st.info(
                f"{DATASETS[name].title} is not on disk, so the run first tries to download it. "
                f"Works offline now: {', '.join(offline)}."
            )
        try:
            run.start()
        except RunCapacityError as exc:
            st.warning(f"Training did not start: {exc}.")
            return False
        train_run.begin(run, loaded if request["resume"] else None)
        return True
    return False
