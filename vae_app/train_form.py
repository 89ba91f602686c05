"""The Train page's settings form, and the training run it describes."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from vae_app import cache, own_images, state, train_run
from vae_app.escape import md
from vae_app.widgets import guard
from vae_core.checkpoints import LoadedCheckpoint
from vae_core.config import ModelConfig, TrainConfig
from vae_core.datasets import DATASETS, dataset_info, default_data_root
from vae_core.defaults import MIN_STEPS, PAGE_DEFAULTS, suggested_epochs
from vae_core.limits import check_training
from vae_core.registry import new_run_id
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


FORM_KEY = (
    "train_form_values"  # the form's values, kept under our own key: Streamlit drops widget state off-page
)
SUGGESTED_KEY = "train_epochs_suggested"  # (epochs, why) last suggested for the dataset in the form
FOLDER_EPOCHS = "chosen by the run once it has counted your images"


def form_defaults(offline: list[str]) -> dict:
    """Return the form's first values: ``vae_core.defaults.PAGE_DEFAULTS``, the dataset falling back to one on disk."""
    d = PAGE_DEFAULTS
    return {
        "train_dataset": d.dataset if d.dataset in offline or not offline else offline[0],
        "train_folder": "",
        "train_arch": d.arch,
        "train_latent": d.latent_dim,
        "train_beta": d.beta,
        "train_warmup": 0,
        "train_epochs": d.epochs,
        "train_batch": d.batch_size,
        "train_lr": d.lr,
        "train_seed": 0,
        "train_likelihood": "auto",
        "train_binarize": False,
        "train_resume": False,
        "train_hidden": ", ".join(str(w) for w in d.hidden),
        "train_channels": "32, 64",
        "train_limit": 0,
        "train_device": "auto",
    }


def restore_form(defaults: dict) -> None:
    """Give each form widget its kept value (or its default) before it is drawn, after a visit to another page."""
    kept = st.session_state.setdefault(FORM_KEY, {})
    for key, value in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = kept.get(key, value)


def keep_form(defaults: dict) -> None:
    """Copy the form's current values under ``FORM_KEY``, which outlives the widgets."""
    st.session_state[FORM_KEY] = {k: st.session_state[k] for k in defaults if k in st.session_state}


def suggest_epochs(offline: list[str]) -> str:
    """Follow the dataset's size with the Epochs field until the user types a number of their own.

    The suggestion gives at least ``MIN_STEPS`` optimisation steps (``vae_core.defaults``). When it
    changes (another dataset, batch size or image limit) and the field still holds the previous
    suggestion, the field takes the new one. Returns a sentence for the page saying what was suggested and why.
    """
    ss = st.session_state
    batch, limit = ss["train_batch"], ss["train_limit"]
    own = bool(ss["train_folder"].strip()) or ss.get("train_zip") is not None
    n = (
        None
        if own or ss["train_dataset"] not in offline
        else cache.train_size(ss["train_dataset"], str(default_data_root()))
    )
    if n is not None and isinstance(limit, int) and limit > 0:
        n = min(n, limit)
    if not (isinstance(batch, int) and batch >= 1):
        return ""
    previous = ss.get(SUGGESTED_KEY)
    if n is None:
        why = (
            f"For {'your own images' if own else 'a dataset not yet on disk'} the epochs are {FOLDER_EPOCHS}"
        )
        epochs = previous[0] if previous else ss["train_epochs"]
    else:
        epochs = suggested_epochs(n, batch_size=batch)
        steps = -(-n // batch)
        why = (
            f"{epochs} epochs: {n:,} training images at batch size {batch} are {steps:,} steps an epoch, and a run "
            f"needs at least {MIN_STEPS} steps to draw recognisable images"
        )
    if previous is None or ss["train_epochs"] == previous[0]:
        if previous is not None and epochs != previous[0]:
            why = f"Epochs changed from {previous[0]} to {why}"
        if ss["train_epochs"] != epochs:
            # Only a change is written: writing the field sends its value to the browser, which would
            # overwrite a number the user is typing there while this rerun runs.
            ss["train_epochs"] = epochs
    elif n is not None:
        why = f"Suggested: {why}; you chose {ss['train_epochs']}"
    ss[SUGGESTED_KEY] = (epochs, why)
    return why + "."


def epochs_follow_suggestion() -> bool:
    """Return whether the Epochs field still holds the suggested number (the run may then choose its own)."""
    previous = st.session_state.get(SUGGESTED_KEY)
    return previous is not None and st.session_state.get("train_epochs") == previous[0]


def settings_form(offline: list[str], loaded: LoadedCheckpoint | None) -> dict | None:
    """Draw the training settings; return their values when Start was pressed, else None.

    No ``st.form``: every change reruns the page, so the epoch suggestion follows the dataset, and
    the values are kept for the session (``restore_form``/``keep_form``) when the user visits other pages.
    """
    defaults = form_defaults(offline)
    restore_form(defaults)
    note = suggest_epochs(offline)
    with st.container(border=True, key="train_form"):
        names = list(DATASETS)
        dataset = st.selectbox(
            "Dataset",
            names,
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
        latent = c2.number_input("Latent dimensions", step=1, key="train_latent")
        beta = c1.number_input("β (KL weight)", step=0.1, key="train_beta")
        warmup = c2.number_input("KL warm-up epochs", step=1, key="train_warmup")
        epochs = c1.number_input("Epochs", step=1, key="train_epochs")
        batch = c2.number_input("Batch size", step=1, key="train_batch")
        lr = c1.number_input("Learning rate", step=1e-4, format=LR_FORMAT, key="train_lr")
        seed = c2.number_input("Seed", step=1, key="train_seed")
        if note:
            st.caption(note)
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
            "training timeline. Models saved with their optimizer state continue Adam where it stopped (same "
            "batch size and learning rate: the curve goes on without a jump). The saved original is not changed.",
        )
        trained = loaded.info.train_config if loaded is not None else None
        if resume and trained is not None and (trained.batch_size, trained.lr) != (batch, lr):
            st.caption(
                f"It was trained at batch size {trained.batch_size} and learning rate {trained.lr:g}; set those "
                "to continue exactly where it stopped."
            )
        with st.expander("Advanced"):
            hidden = st.text_input("MLP hidden layer widths", key="train_hidden")
            channels = st.text_input("Conv channels (one stride-2 layer each)", key="train_channels")
            limit = st.number_input(
                "Use at most this many training images (0: all)", step=1, key="train_limit"
            )
            device = st.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="train_device")
        pressed = st.button(
            "Start training", key="train_start", type="primary", icon=":material/play_arrow:", width="stretch"
        )
    keep_form(defaults)
    if not pressed:
        return None
    return dict(
        dataset=f"folder:{folder.strip()}" if folder.strip() else dataset,
        arch=arch,
        latent=int(latent),
        beta=float(beta),
        warmup=int(warmup),
        epochs=int(epochs),
        auto_epochs=epochs_follow_suggestion(),
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


def epochs_for(batch_size: int) -> Callable[[int], tuple[int, str]]:
    """Return how a run chooses its epochs once it has counted its training images (``TrainingRun(epochs_for=)``)."""

    def choose(n_train: int) -> tuple[int, str]:
        epochs = suggested_epochs(n_train, batch_size=batch_size)
        return epochs, (
            f"{epochs} epochs, chosen for {n_train:,} training images at batch size {batch_size} "
            f"(at least {MIN_STEPS} optimisation steps)"
        )

    return choose


def build_run(v: dict, loaded: LoadedCheckpoint | None, *, run_id: str) -> TrainingRun:
    """Turn the form's values into a run that trains its own model (a copy of the current one when resuming).

    With ``auto_epochs`` (the Epochs field still shows the suggestion) a new run chooses its epochs
    from the number of images it loads, so a folder of 300 images trains as many steps as a dataset.
    ``run_id`` is the run's id in the server's registry; the run stops once no session watches it.

    Raises:
        ValueError: A value is out of range or past a limit (``vae_core.limits``), before any
            data is read or model built.
    """
    check_numbers(v)
    init_state, history, timeline, train_state = None, (), None, None
    roots = own_images.session_roots()  # a folder dataset is read only below these
    if v["resume"]:
        model_config, dataset = loaded.info.model_config, loaded.info.dataset
        # A copy: the cached model is shared by every session and must never change.
        init_state = {k: t.clone() for k, t in loaded.model.state_dict().items()}
        history, timeline, train_state = loaded.info.history, loaded.timeline, loaded.train_state
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
        train_state=train_state,
        history=history,
        timeline=timeline,
        keep_going=state.run_wanted(run_id),
        autosave=train_run.new_autosaver(),
        folder_roots=roots,
        epochs_for=epochs_for(v["batch"]) if v.get("auto_epochs") and not v["resume"] else None,
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
        run_id = new_run_id()
        run = build_run(request, loaded, run_id=run_id)
        name = run.train_config.dataset
        if name in DATASETS and name not in offline:
            st.info(
                f"{DATASETS[name].title} is not on disk, so the run first tries to download it. "
                f"Works offline now: {', '.join(offline)}."
            )
        try:
            train_run.launch(run, run_id=run_id, resumed=loaded if request["resume"] else None)
        except RunCapacityError as exc:
            st.warning(f"Training did not start: {exc}.")
            return False
        return True
    return False
