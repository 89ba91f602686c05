"""The training benchmarks' option handling and helpers (the measurements themselves run in `make bench`)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from vae_core.datasets import load_dataset
from vae_core.defaults import PAGE_DEFAULTS, suggested_epochs

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_speed():
    return load("train_speed")


@pytest.fixture(scope="module")
def train_app():
    return load("train_app")


def fake_mnist_root(tmp_path: Path, files) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in files:
        (raw / name).write_bytes(b"")
    return tmp_path


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="a CUDA GPU is present: --device cuda would really train"
)
def test_train_speed_refuses_cuda_without_a_gpu(train_speed, tmp_path, capsys):
    root = fake_mnist_root(tmp_path, train_speed.MNIST_FILES)
    assert train_speed.main(["--device", "cuda", "--data-dir", str(root), "--quick"]) == 2
    assert "no CUDA GPU is available" in capsys.readouterr().err


def test_train_speed_says_what_data_is_missing(train_speed, tmp_path, capsys):
    assert train_speed.main(["--data-dir", str(tmp_path), "--quick"]) == 2
    assert "MNIST not found" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--rounds", "0"], "--rounds must be >= 1"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--device", "tpu"], "invalid choice"),
    ],
)
def test_train_speed_refuses_bad_options(train_speed, argv, message, capsys):
    with pytest.raises(SystemExit):
        train_speed._parse_args(argv)
    assert message in capsys.readouterr().err


def test_train_speed_options(train_speed):
    args = train_speed._parse_args(["--device", "cuda", "--rounds", "5"])
    assert args.device == "cuda" and args.rounds == 5 and args.epochs == 10 and args.max_epochs == 30
    quick = train_speed._parse_args(["--quick"])
    assert (quick.epochs, quick.rounds, quick.nll_k) == (2, 1, 0)


def test_the_flop_limit_is_a_positive_time(train_speed):
    limit = train_speed.flop_limit(torch.device("cpu"), repeats=2)
    # 784-400-20 at batch 128: forward, weight and input gradients (none for the images).
    assert limit["gflop"] == pytest.approx(0.4198, abs=1e-4)
    assert limit["matmul_ms"] > 0 and limit["gflops"] > 0


def test_train_app_uses_the_page_defaults(train_app):
    data = load_dataset("digits")
    model_config, train_config = train_app.page_configs(data, "digits")
    assert (model_config.arch, model_config.latent_dim, model_config.hidden) == (
        PAGE_DEFAULTS.arch,
        PAGE_DEFAULTS.latent_dim,
        PAGE_DEFAULTS.hidden,
    )
    assert (train_config.batch_size, train_config.lr) == (PAGE_DEFAULTS.batch_size, PAGE_DEFAULTS.lr)
    assert train_config.epochs == suggested_epochs(len(data.train_x), batch_size=PAGE_DEFAULTS.batch_size)


def test_train_app_confidence_is_a_mean_top_probability(train_app):
    classifier = torch.nn.Linear(4, 3)
    with torch.no_grad():
        classifier.weight.zero_()
        classifier.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
    assert train_app.confidence(classifier, torch.rand(5, 4)) == pytest.approx(1 / 3)


def test_train_app_refuses_bad_options(train_app, capsys):
    with pytest.raises(SystemExit):
        train_app._parse_args(["--rounds", "0"])
    assert "--rounds must be >= 1" in capsys.readouterr().err


def test_train_app_measures_in_a_thread_that_ends(train_app):
    import threading

    seen = []
    assert train_app.in_thread(lambda a: seen.append(threading.current_thread()) or a * 2, 21) == 42
    assert seen[0] is not threading.main_thread() and not seen[0].is_alive()
    with pytest.raises(ZeroDivisionError):
        train_app.in_thread(lambda: 1 / 0)
