"""This session's training run: start it, say how it ended, save it, and keep its timeline for the session."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from vae_app import cache, own_images, state
from vae_app.escape import code, md, md_lines
from vae_app.widgets import guard
from vae_core import autosave
from vae_core.bundle import save_trained, test_metrics
from vae_core.checkpoints import LoadedCheckpoint
from vae_core.cli import SHIPPED
from vae_core.datasets import available_offline
from vae_core.naming import free_name
from vae_core.objective import objective_text
from vae_core.registry import KEEP_ENDED_S, new_run_id
from vae_core.runs import RunCapacityError, RunSnapshot, TrainingRun

RUN_KEY, NAME_KEY, COUNT_KEY = state.TRAIN_RUN_KEY, state.TRAIN_RUN_NAME_KEY, "train_run_count"
SAVED_KEY, SAVE_NAME_KEY = "train_saved", "train_save_name"
INTERRUPTED_SHOWN = 3  # unsaved runs offered at once on the Train page, newest first
NLL_K, NLL_IMAGES = 50, 500


def launch(run: TrainingRun, *, run_id: str, resumed: LoadedCheckpoint | None) -> None:
    """Register ``run`` on the server under ``run_id``, start it, and make it this session's run.

    The previous run's timeline is kept for the session first; the URL names the new run, so a
    reloaded tab finds it again.

    Raises:
        RunCapacityError: too many runs are going on this server (nothing changes for the session).
    """
    count = st.session_state.get(COUNT_KEY, 0) + 1
    cfg = run.model_config
    what = f"{resumed.info.name} continued" if resumed is not None else run.train_config.dataset
    label = f"run {count}: {what} · {cfg.arch.upper()} · z = {cfg.latent_dim}"
    state.watch_run(run_id, run, label=label)
    try:
        run.start()
    except RunCapacityError:
        cache.run_registry().forget(run_id)
        raise
    previous = st.session_state.get(RUN_KEY)
    if previous is not None:
        remember_finished(previous)
    st.session_state[COUNT_KEY] = count
    st.session_state.pop(SAVE_NAME_KEY, None)  # the next save suggests a name for this run
    state.own_run(run_id, run, label=label)


def remember_finished(run: TrainingRun) -> None:
    """Keep an ended run's timeline for the session (saved or not), when it recorded at least one epoch."""
    timeline = run.timeline()
    if not run.snapshot().done or timeline is None or not timeline.frames:
        return
    names = tuple(run.data.class_names) if run.data is not None else ()
    state.remember_run(state.SessionRun(st.session_state.get(NAME_KEY, "run"), timeline, names))


def suggested_name(run: TrainingRun, folder: Path) -> str:
    """Return a save name for ``run`` that replaces nothing: no file in ``folder``, never a shipped model's name."""
    cfg = run.model_config
    source = run.train_config.dataset.rstrip("/").split("/")[-1]
    try:
        return free_name(folder, f"{source}-{cfg.arch}-{cfg.latent_dim}", reserved=[s.name for s in SHIPPED])
    except ValueError:  # a folder name with no letters or digits
        return free_name(folder, f"model-{cfg.arch}-{cfg.latent_dim}", reserved=[s.name for s in SHIPPED])


def save_run(run: TrainingRun, snap: RunSnapshot, target: Path, *, overwrite: bool = False) -> Path:
    """Measure the run's test figures, then save it with its sample's atlas and its timeline, showing progress.

    Without ``overwrite`` the name is claimed when the file is written: a checkpoint saved under it
    meanwhile (another session) makes this raise CheckpointExists ("name taken") and stays as it is.
    """
    n = len(run.data.test_x)
    with st.status(f"Saving {code(target.name)} …", expanded=True) as status:
        bar = st.progress(
            0.0, text=f"Importance-weighted NLL with K = {NLL_K} on {min(n, NLL_IMAGES):,} test images"
        )
        metrics = test_metrics(
            run.model, run.data.test_x, nll_k=NLL_K, nll_images=NLL_IMAGES, on_progress=bar.progress
        )
        bar.progress(0.0, text="Mapping the latent space of the bundled sample")
        path = save_trained(
            target,
            model=run.model,
            data=run.data,
            train_config=run.train_config,
            history=snap.history,
            metrics=metrics,
            timeline=run.timeline(),
            train_state=run.train_state,
            on_progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m),
            overwrite=overwrite,
        )
        if run.autosave is not None:  # saved for good: the autosave is no longer needed
            run.autosave.discard()
        status.update(label=f"Saved {code(path.name)}", state="complete", expanded=False)
    return path


def summary_text(snap: RunSnapshot) -> str:
    """Return the run's wall time and optimisation steps so far, e.g. "9.8 s · 324 optimisation steps"."""
    seconds = snap.seconds
    clock = f"{seconds:.1f} s" if seconds < 120 else f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    text = f"{clock} of training · {snap.steps:,} optimisation steps"
    in_all = (
        int(snap.history[-1].get("steps", 0)) if snap.history and snap.done else 0
    )  # earlier training too
    return text + (f" ({in_all:,} in all)" if in_all > snap.steps else "")


def settings_table(run: TrainingRun) -> None:
    """Show every setting the run trains with: the model's and the training's configs, β and warm-up included."""
    cfg, train = run.model_config, run.train_config
    rows = {
        "dataset": train.dataset,
        "architecture": cfg.arch.upper()
        + (f", hidden {', '.join(map(str, cfg.hidden))}" if cfg.arch == "mlp" else "")
        + (f", channels {', '.join(map(str, cfg.channels))}" if cfg.arch == "conv" else ""),
        "image shape (C, H, W)": ", ".join(map(str, cfg.image_shape)),
        "latent dimensions": str(cfg.latent_dim),
        "likelihood": cfg.likelihood,
        "objective": objective_text(beta=cfg.beta, warmup_epochs=train.kl_warmup_epochs),
        "epochs": f"{train.epochs} (this run)",
        "batch size": str(train.batch_size),
        "learning rate": f"{train.lr:g}",
        "seed": str(train.seed),
        "device": train.device,
        "dynamic binarization": "yes" if train.binarize else "no",
        "training images": "all" if train.max_train_images is None else f"at most {train.max_train_images:,}",
    }
    with st.expander("Settings of this run", expanded=run.alive):
        st.markdown("\n".join(f"- **{k}**: {md(v) if k != 'objective' else v}" for k, v in rows.items()))


def outcome(snap: RunSnapshot) -> None:
    """Say how an ended run ended, in plain words."""
    epochs, error = len(snap.history), snap.error or "unknown error"
    if snap.status == "finished":
        st.success(
            f"Finished: {epochs} epochs trained ({summary_text(snap)}). Save the model below to explore it."
        )
    elif snap.message.startswith("reopened"):
        st.info(
            f"Reopened the unsaved run: the model after epoch {epochs}, as it was autosaved. Save it below."
        )
    elif snap.status == "stopped":
        st.info(f"Stopped. Kept the model after epoch {epochs}, the last complete epoch.")
    elif error.startswith("DatasetUnavailable: "):
        st.error(md_lines(error.removeprefix("DatasetUnavailable: ")))  # it quotes the folder typed
        st.info(
            f"Datasets that work offline now: **{', '.join(available_offline())}**. Pick one and start again."
        )
    elif "non-finite" in snap.message:
        st.error(f"Training stopped because the loss became infinite or NaN. {md(error)}")
    else:
        st.error(f"Training failed: {md(error)}")


def gone_note() -> None:
    """Say so when the page's address named a run this server no longer holds (``state.follow_run``)."""
    if st.session_state.get(RUN_KEY) is None and st.session_state.get(state.TRAIN_RUN_GONE_KEY):
        st.warning(
            f"The run named in this page's address is no longer on the server: ended runs are kept "
            f"{KEEP_ENDED_S / 3600:g} hour for saving, and a server restart ends them all. Its autosave, "
            "if any, is listed above."
        )


def new_autosaver() -> autosave.Autosaver | None:
    """Return an autosaver for a new run in the app's autosave folder, or None when autosaving is off."""
    return autosave.Autosaver(state.autosave_dir()) if autosave.autosave_keep() else None


def autosave_note(snap: RunSnapshot) -> None:
    """Say so when the run's last autosave failed (training goes on; a crash would lose more)."""
    if snap.autosave_error:
        st.caption(f"The last autosave failed ({md(snap.autosave_error)}); training goes on.")


def interrupted_section() -> None:
    """Offer the runs that ended unsaved (a killed server, a closed tab): resume, reopen to save, or discard."""
    current = st.session_state.get(RUN_KEY)
    if current is not None and current.alive:
        return
    items = []
    with guard("list the unsaved runs"):  # an unreadable folder, a bad VAE_AUTOSAVE_KEEP
        items = autosave.interrupted_runs(state.autosave_dir())
        autosave.autosave_keep()
    if not items:
        return
    with st.container(border=True, key="train_interrupted"):
        st.markdown(
            "**Unsaved runs**, autosaved after every epoch: they ended without a save (a server restart, a closed "
            "tab, a newer run)."
        )
        for item in items[:INTERRUPTED_SHOWN]:
            info, key = item.info, item.path.stem
            cfg = info.model_config
            last = info.history[-1].get("val_total") if info.history else None
            st.markdown(
                f"{md(info.dataset)} · {cfg.arch.upper()} · z = {cfg.latent_dim} · "
                f"**{item.epochs_done} of {item.epochs_planned} epochs**"
                + (f" · test −ELBO {last:.1f} nats" if isinstance(last, float) else "")
                + f" · autosaved {autosave.age_text(item.saved_at)}"
            )
            c1, c2, c3 = st.columns(3)
            if item.epochs_left and c1.button(
                f"Resume ({item.epochs_left} left)",
                key=f"train_resume_{key}",
                icon=":material/play_arrow:",
            ):
                reopen(item, train=True)
            if c2.button("Open to save", key=f"train_reopen_{key}", icon=":material/save:"):
                reopen(item, train=False)
            if c3.button("Discard", key=f"train_discard_{key}", icon=":material/delete:"):
                try:
                    autosave.discard(item.path)
                except autosave.AutosaveTaken as exc:
                    st.warning(f"Not discarded: {exc}.")
                else:
                    st.rerun()
        if len(items) > INTERRUPTED_SHOWN:
            st.caption(
                f"…and {len(items) - INTERRUPTED_SHOWN} older. The newest {autosave.autosave_keep()} are kept "
                f"(set {autosave.AUTOSAVE_KEEP_ENV} to keep more)."
            )


def reopen(item: autosave.InterruptedRun, *, train: bool) -> None:
    """Make an interrupted run this session's run: continue training it, or reopen it for saving."""
    with guard("resume the run" if train else "open the run"):
        run_id = new_run_id()
        try:
            run = TrainingRun.from_autosave(
                item,
                train=train,
                folder_roots=own_images.session_roots(),
                keep_going=state.run_wanted(run_id),
            )
            launch(run, run_id=run_id, resumed=None)
        except (autosave.AutosaveTaken, RunCapacityError) as exc:
            st.warning(f"Not started: {exc}.")
            return
        st.session_state[SAVED_KEY] = None
        st.rerun()
