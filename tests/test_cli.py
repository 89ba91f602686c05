"""The command line: train, eval and list, on the offline digits source and the shared MNIST."""

from pathlib import Path

from vae_core.checkpoints import load_checkpoint
from vae_core.cli import SHIPPED, main


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
