"""The command line: train, eval and list, on the offline digits source and the shared MNIST."""

import dataclasses
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.crafted import deflate_bomb, real_checkpoint, stride0_checkpoint
from tests.helpers import tiny_model
from vae_core import cli, train_command
from vae_core.checkpoints import load_checkpoint, read_info
from vae_core.cli import SHIPPED, main
from vae_core.saving import save_checkpoint


def test_train_then_eval_then_list_on_digits(tmp_path: Path, capsys):
    out = tmp_path / "digits.pt"
    code = main(
        [
            "train",
            "--dataset",
            "digits",
            "--arch",
            "mlp",
            "--latent-dim",
            "3",
            "--hidden",
            "32",
            "--epochs",
            "2",
            "--nll-k",
            "5",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "epoch   1/2" in printed and "epoch   2/2" in printed and "test NLL" in printed
    loaded = load_checkpoint(out)
    assert loaded.info.epochs == 2 and loaded.info.dataset == "digits"
    assert loaded.sample is not None and len(loaded.sample.images) == 297
    assert {"test_total", "test_recon", "test_kl", "test_nll", "active_units"} <= set(loaded.info.metrics)
    assert loaded.info.extra["train_images"] == 1500 and loaded.info.extra["seed"] == 0

    assert main(["eval", str(out), "-k", "3", "--images", "50"]) == 0
    printed = capsys.readouterr().out
    assert "test -ELBO" in printed and "K=3, 50 images" in printed and "active units" in printed

    assert main(["list", str(tmp_path)]) == 0
    assert "digits · mlp · z=3 · 2 epochs" in capsys.readouterr().out


def test_a_missing_dataset_is_a_clear_error_not_a_traceback(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "x.pt"),
            "--data-dir",
            str(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "train-images-idx3-ubyte" in err and "digits" in err
    assert not (tmp_path / "x.pt").exists()


def test_eval_refuses_a_hostile_file(tmp_path: Path, capsys):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(b"\x80\x04cos\nsystem\n.")
    assert main(["eval", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_shipped_specs_are_distinct_and_small():
    names = [s.name for s in SHIPPED]
    assert len(set(names)) == len(names) == 3
    assert {s.model.latent_dim for s in SHIPPED if s.train.dataset == "mnist"} == {2, 16}


def test_cli_trains_a_conv_vae_on_the_shared_mnist(mnist_root: Path, tmp_path: Path, capsys):
    out = tmp_path / "mnist-conv.pt"
    code = main(
        [
            "train",
            "--dataset",
            "mnist",
            "--arch",
            "conv",
            "--latent-dim",
            "8",
            "--epochs",
            "1",
            "--max-train-images",
            "1000",
            "--nll-k",
            "2",
            "--nll-images",
            "100",
            "--data-dir",
            str(mnist_root),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "5,000 train / 10,000 test images" in printed
    info = load_checkpoint(out).info
    assert (
        info.metrics["test_total"] < 550
    )  # one short epoch already beats a uniform decoder (784 ln 2 = 543)
    assert info.extra["train_images"] == 1000 and info.extra["test_images"] == 10_000


def _train_args(out: Path | None, *extra: str) -> list[str]:
    args = ["train", "--dataset", "digits", "--arch", "mlp", "--latent-dim", "2", "--hidden", "16"]
    args += ["--epochs", "1", "--nll-k", "0", "--device", "cpu", *extra]
    return args + (["--out", str(out)] if out is not None else [])


def _no_training(monkeypatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(train_command, "fit", lambda *a, **k: calls.append("fit") or pytest.fail("trained"))
    monkeypatch.setattr(
        train_command, "load_dataset", lambda *a, **k: calls.append("load") or pytest.fail("read data")
    )
    return calls


def _shipped_file(path: Path) -> Path:
    save_checkpoint(
        path, model=tiny_model(), train_config=None, dataset="mnist", history=[], extra={"shipped": True}
    )
    return path


@pytest.mark.parametrize(
    "case",
    [
        "a folder",
        "under /proc",
        "a new folder under /proc",
        "a file as folder",
        "shipped name",
        "shipped file",
    ],
)
def test_a_bad_out_is_refused_before_training(tmp_path: Path, capsys, monkeypatch, case: str):
    # Issue 12, F7: `train --out /proc/x.pt` (or a folder) trained and evaluated fully, then died with a
    # traceback and lost the model. Now the path is checked first: exit 2, a clear line, nothing trained.
    (tmp_path / "plain-file").write_text("not a folder")
    out, expected = {
        "a folder": (tmp_path, "is a folder"),
        "under /proc": (Path("/proc/x.pt"), "cannot write a file in /proc"),
        "a new folder under /proc": (Path("/proc/new-folder/x.pt"), "cannot create the folder"),
        "a file as folder": (tmp_path / "plain-file" / "x.pt", "cannot create the folder"),
        "shipped name": (tmp_path / "digits-mlp-8.pt", "shipped with the app"),
        "shipped file": (_shipped_file(tmp_path / "mine.pt"), "shipped with the app"),
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    calls = _no_training(monkeypatch)
    assert main(_train_args(out)) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and expected in captured.err, captured.err
    assert "Traceback" not in captured.err and "epoch" not in captured.out
    assert calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no probe or partial file left


@pytest.mark.parametrize("failure", ["folder removed", "name taken meanwhile"])
def test_a_write_failure_after_training_saves_to_a_fallback(
    tmp_path: Path, capsys, monkeypatch, failure: str
):
    # The output was fine before training and fails after it: the trained model goes to a fallback path.
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    out = tmp_path / "sub" / "model.pt"
    real_fit = train_command.fit

    def fit_then_break(*args, **kwargs):
        result = real_fit(*args, **kwargs)
        if failure == "folder removed":
            shutil.rmtree(out.parent)
            out.parent.write_text("the folder became a file")
        else:
            _shipped_file(out)  # another process saved under the name meanwhile
        return result

    monkeypatch.setattr(train_command, "fit", fit_then_break)
    taken = None if failure == "folder removed" else "taken"
    code = main(_train_args(out))
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"error: could not write {out}" in err and "saved the trained model to" in err
    saved = list(here.glob("model-*.pt"))
    assert len(saved) == 1 and str(saved[0]) in err
    loaded = load_checkpoint(saved[0])
    assert loaded.info.epochs == 1 and loaded.info.dataset == "digits"
    if taken:
        assert "name taken" in err and read_info(out).shipped  # the other file is left as it was


def test_the_default_out_never_replaces_a_file_or_takes_a_shipped_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chosen: list[Path] = []
    monkeypatch.setattr(train_command, "train_and_save", lambda *a, out, **k: chosen.append(out) or out)
    args = ["train", "--dataset", "digits", "--arch", "mlp", "--latent-dim", "8", "--hidden", "16"]
    assert main(args) == 0
    assert chosen[-1] == Path("checkpoints/digits-mlp-8-2.pt")  # digits-mlp-8 is a shipped model's name
    Path("checkpoints/digits-mlp-3.pt").write_bytes(b"someone's model")
    assert main([*args[:-3], "3", *args[-2:]]) == 0
    assert chosen[-1] == Path("checkpoints/digits-mlp-3-2.pt")


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "x.pt", "-k", "-5"],
        ["eval", "x.pt", "--images", "-5"],
        ["eval", "x.pt", "--images", "0"],
        ["eval", "x.pt", "--seed", "-1"],
        *(
            ["train", flag, value]
            for flag, value in [
                ("--epochs", "-1"),
                ("--epochs", "0"),
                ("--batch-size", "-128"),
                ("--latent-dim", "-2"),
                ("--hidden", "-5"),
                ("--channels", "0"),
                ("--kl-warmup", "-1"),
                ("--nll-k", "-5"),
                ("--nll-images", "-5"),
                ("--max-train-images", "-1"),
                ("--seed", "-1"),
                ("--workers", "-1"),
            ]
        ),
    ],
    ids=lambda argv: " ".join(argv[:1] + argv[-2:]),
)
def test_negative_counts_are_refused(argv: list[str], capsys, monkeypatch):
    # `-k -5` silently skipped the NLL and `eval --images -5` evaluated 292 of 297 images.
    _no_training(monkeypatch)
    monkeypatch.setattr(cli, "load_checkpoint", lambda *a, **k: pytest.fail("evaluated"))
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-2]}" in err and "or more, got" in err


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["--arch", "mlp", "--hidden", "20000", "20000"], "VAE_MAX_WIDTH"),  # F1 from the command line
        (["--arch", "conv", "--channels", "100000", "100000"], "VAE_MAX_CHANNELS"),
        (["--arch", "mlp", "--hidden", "10000", "10000"], "VAE_MAX_PARAMETERS"),
        (["--latent-dim", "100000"], "VAE_MAX_LATENT_DIM"),
        (["--batch-size", "100000"], "VAE_MAX_BATCH"),
        (["--arch", "conv", "--channels", "512", "512", "--batch-size", "4096"], "VAE_MAX_TRAIN_MEMORY_MB"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_train_past_a_limit_is_refused_before_any_data_is_read(
    tmp_path: Path, capsys, monkeypatch, flags, env
):
    calls = _no_training(monkeypatch)
    out = tmp_path / "x.pt"
    assert main(["train", "--dataset", "digits", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "more than the limit of" in err and env in err, err
    assert "Traceback" not in err and calls == [] and not out.exists()


def test_a_raised_limit_lets_the_same_command_through(tmp_path: Path, capsys, monkeypatch):
    calls = _no_training(monkeypatch)
    monkeypatch.setenv("VAE_MAX_WIDTH", "20000")
    monkeypatch.setenv("VAE_MAX_TRAIN_MEMORY_MB", "100000")
    with pytest.raises(pytest.fail.Exception, match="read data"):
        main(
            [
                "train",
                "--dataset",
                "digits",
                "--arch",
                "mlp",
                "--hidden",
                "20000",
                "--out",
                str(tmp_path / "x.pt"),
            ]
        )
    assert calls == ["load"]


@pytest.mark.parametrize("kind", ["stride0-huge-config", "deflate-bomb"])
def test_eval_and_list_refuse_crafted_files_with_a_message(tmp_path: Path, capsys, kind):
    # F2: a traceback, or an allocation still running after 20 s.
    if kind == "deflate-bomb":
        path = deflate_bomb(real_checkpoint(tmp_path / "ok.pt"), tmp_path / "bad.pt", gib=3)
        (tmp_path / "ok.pt").unlink()
    else:
        path = stride0_checkpoint(tmp_path / "bad.pt", hidden=(10**6,))
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: bad.pt: ") and "Traceback" not in err
    assert main(["list", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert "bad.pt" in listed and "UNREADABLE" in listed, listed


def test_eval_turns_any_loading_failure_into_an_error_line(tmp_path: Path, capsys, monkeypatch):
    def explode(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: not enough memory\nmore")

    monkeypatch.setattr(cli, "load_checkpoint", explode)
    assert main(["eval", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'm.pt'}: could not be loaded (RuntimeError: [enforce fail")
    assert err.endswith("not enough memory)\n")  # its first line only


def test_resume_continues_the_run_in_its_own_file_with_its_optimizer_state(tmp_path: Path, capsys):
    out = tmp_path / "run.pt"
    assert main(_train_args(out, "--batch-size", "100")) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "2", "--nll-k", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "resuming run after epoch 1 with its optimizer state" in printed
    assert "epoch   2/3" in printed and "epoch   3/3" in printed and "epoch   1/" not in printed
    assert "trained 2 epochs, 30 optimisation steps (45 in all)" in printed
    loaded = load_checkpoint(out)  # the run went on in its own file
    assert [r["epoch"] for r in loaded.info.history] == [1, 2, 3]
    assert loaded.train_state is not None and loaded.train_state.step == 45
    assert [frame.epoch for frame in loaded.timeline.frames] == [1, 2, 3]
    assert loaded.info.train_config.batch_size == 100  # the run's own settings, not the defaults


def test_resume_refuses_a_model_with_no_run_to_continue(tmp_path: Path, capsys):
    imported = tmp_path / "imported.pt"
    save_checkpoint(imported, model=tiny_model(), train_config=None, dataset="digits", history=[])
    assert main(["train", "--resume", str(imported), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no run to resume" in capsys.readouterr().err


def test_resume_of_a_shipped_model_saves_under_a_new_name(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chosen: list[Path] = []
    monkeypatch.setattr(train_command, "train_and_save", lambda *a, out, **k: chosen.append(out) or out)
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "digits-mlp-8.pt"
    if not shipped.is_file():
        pytest.skip("the shipped digits-mlp-8 checkpoint is not in checkpoints/")
    assert main(["train", "--resume", str(shipped), "--epochs", "1"]) == 0
    assert chosen == [Path("checkpoints/digits-mlp-8-2.pt")]


def test_the_default_epochs_give_enough_steps_and_the_summary_shows_time_and_steps(
    tmp_path: Path, capsys, monkeypatch
):
    # Issue 11: the CLI's default conv model on digits ended 3 epochs with 0 active units. The default
    # epoch count now gives MIN_STEPS (300) optimisation steps: 25 epochs of 12 steps on 1,500 images.
    seen: list[int] = []
    real_fit = train_command.fit

    def counting_fit(model, data, config, **kwargs):
        seen.append(config.epochs)
        return real_fit(model, data, dataclasses.replace(config, epochs=2), **kwargs)  # short, for speed

    monkeypatch.setattr(train_command, "fit", counting_fit)
    args = ["train", "--dataset", "digits", "--arch", "mlp", "--latent-dim", "2", "--hidden", "16"]
    assert main([*args, "--nll-k", "0", "--device", "cpu", "--out", str(tmp_path / "m.pt")]) == 0
    printed = capsys.readouterr().out
    assert (
        seen == [25] and "25 epochs: the fewest that give 300 optimisation steps on 1,500 images" in printed
    )
    summary = re.search(r"trained 2 epochs, 24 optimisation steps \(24 in all\) in (\d+\.\d) s", printed)
    assert summary is not None, printed


@pytest.mark.slow  # 25 conv epochs: about 15 s on one free core
def test_the_default_conv_model_on_digits_does_not_collapse(tmp_path: Path, capsys):
    out = tmp_path / "conv.pt"
    assert main(["train", "--dataset", "digits", "--nll-k", "0", "--device", "cpu", "--out", str(out)]) == 0
    metrics = load_checkpoint(out).info.metrics
    assert metrics["active_units"] >= 8, metrics  # it was 0 after the old default of 3 epochs
    assert metrics["test_total"] < 170, metrics  # 184 (the prior's blur) when it collapsed


def test_the_progress_bar_shows_in_a_terminal_only(tmp_path: Path, capsys, monkeypatch):
    assert main(_train_args(tmp_path / "quiet.pt")) == 0
    quiet = capsys.readouterr().out
    assert "step/s" not in quiet and "\r" not in quiet and "epoch   1/1" in quiet
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(_train_args(tmp_path / "bar.pt")) == 0
    shown = capsys.readouterr().out
    assert "\repoch 1: " in shown and "/12 [" in shown  # tqdm's bar over the epoch's 12 steps ...
    assert shown.index("\repoch 1: ") < shown.index("epoch   1/1")  # ... then the epoch's line


def test_the_faces64_preset_needs_a_folder_of_its_image_size(capsys, monkeypatch):
    _no_training(monkeypatch)
    assert main(["train", "--dataset", "digits", "--preset", "faces64"]) == 2
    assert "--preset faces64 is for (3, 64, 64) images" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-5", "nan", "lots"])
def test_a_memory_budget_must_be_a_positive_number(value: str, capsys, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "digits", "--memory-mb", value])
    assert "argument --memory-mb" in capsys.readouterr().err
