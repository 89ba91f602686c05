"""Compare training speed with the MNIST VAE of pytorch/examples (``vae/main.py``).

Trains the example's 784-400-20 MLP VAE in one process on the same MNIST data, in
alternating rounds (example, vae_core, example, vae_core, ...; three by default) so both
see the same machine load, and reports the median over the rounds:

* **example**: as ``vae/main.py`` does it: ``torchvision.datasets.MNIST`` with
  ``transforms.ToTensor()``, a shuffling ``DataLoader`` of batch 128 (``num_workers=1,
  pin_memory=True`` only on CUDA), Adam at lr 1e-3, loss = BCE summed over pixels and the
  batch + the closed-form KL (Kingma & Welling 2014, appendix B), test loss averaged per
  image over the test set after every epoch. The per-batch log prints are left out.
* **vae_core**: ``vae_core.training.fit`` on ``VAE(ModelConfig(arch="mlp", latent_dim=20,
  hidden=(400,)))``: the same network and the same negative ELBO (Bernoulli, beta 1), with the
  images held as one uint8 tensor on the device and batched by a shuffled index.

It prints images per second for both (training loop only, test evaluation excluded), their
ratio in each round and the median, the cumulative training time each needs to reach the
example's test loss after its last epoch (10 by default), and the time per step against the
time the step's matrix products alone take (the FLOP limit). ``vae_core`` trains on past
``--epochs`` (up to ``--max-epochs``) only when it has not reached that loss yet. Target: at
least 3x the example's images per second at batch 128.

Usage::

    python benchmarks/train_speed.py [--data-dir DIR] [--epochs 10] [--rounds 3] [--threads N]
        [--device cpu|cuda] [--quick]

With ``--device cuda`` both loops run on the GPU (the example as ``vae/main.py`` does, copying
each batch; ``vae_core`` with the whole training set resident on the GPU). Results are also
written as JSON to ``benchmarks/results/train_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn, optim

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from vae_core.checkpoints import load_checkpoint  # noqa: E402
from vae_core.config import ModelConfig, TrainConfig  # noqa: E402
from vae_core.datasets import DatasetUnavailable, load_dataset  # noqa: E402
from vae_core.metrics import iwae_nll  # noqa: E402
from vae_core.model import VAE  # noqa: E402
from vae_core.training import StepInfo, fit  # noqa: E402

BATCH_SIZE = 128
LR = 1e-3
EXAMPLE_SEED = 1  # vae/main.py's default --seed
OUR_SEED = 0
TARGET_RATIO = 3.0
ROUNDS = 3
# The shipped conv model's NLL is measured the same way (python -m vae_core ship).
NLL_IMAGES = 2000
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results" / "train_speed.json"


@dataclass(frozen=True)
class EpochStats:
    """One epoch: mean train and test loss (nats per image), images trained on, training time.

    ``seconds`` is wall time; ``cpu_seconds`` the process's CPU time over the same loop, which
    other processes on a shared machine disturb much less.
    """

    epoch: int
    train_loss: float
    test_loss: float
    images: int
    seconds: float
    cpu_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


@dataclass(frozen=True)
class RunSummary:
    """Throughput over the compared epochs and when the target test loss was first reached."""

    name: str
    epochs: list[EpochStats]
    compared_epochs: int
    train_images: int
    train_seconds: float
    train_cpu_seconds: float
    images_per_second: float
    images_per_cpu_second: float
    test_loss: float
    target_epoch: int | None
    seconds_to_target: float | None
    cpu_seconds_to_target: float | None


class ExampleVAE(nn.Module):
    """The VAE of pytorch/examples ``vae/main.py``: fc1 784->400, fc21/fc22 400->20, fc3 20->400, fc4 400->784."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def example_loss(
    recon_x: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
) -> torch.Tensor:
    """Return BCE + KL summed over pixels, latent dimensions and the batch, as the example does."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    # KL(q(z|x) || N(0, I)) = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) (K&W 2014, appendix B).
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def run_example(root: Path, *, epochs: int, device: torch.device) -> tuple[list[EpochStats], ExampleVAE]:
    """Train and test the example's VAE for ``epochs`` epochs; time only the training loops."""
    from torchvision import datasets, transforms

    torch.manual_seed(EXAMPLE_SEED)
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    train_set = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root, train=False, download=False, transform=transforms.ToTensor())
    train_loader = torch.utils.data.DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True, **kwargs)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=BATCH_SIZE, shuffle=True, **kwargs)
    model = ExampleVAE().to(device)
    optimizer = optim.Adam(model.parameters(), lr=LR)

    stats = []
    for epoch in range(1, epochs + 1):
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        train_loss = 0.0
        for data, _ in train_loader:
            data = data.to(device)
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = example_loss(recon_batch, data, mu, logvar)
            loss.backward()
            train_loss += loss.item()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start

        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                data = data.to(device)
                recon_batch, mu, logvar = model(data)
                test_loss += example_loss(recon_batch, data, mu, logvar).item()
        n_train = len(train_loader.dataset)
        record = EpochStats(
            epoch=epoch,
            train_loss=train_loss / n_train,
            test_loss=test_loss / len(test_loader.dataset),
            images=n_train,
            seconds=seconds,
            cpu_seconds=cpu_seconds,
        )
        _print_epoch("example", record, epochs)
        stats.append(record)
    return stats, model


def as_vae_core(example: ExampleVAE) -> VAE:
    """Return the example's trained weights in a ``vae_core`` MLP VAE of the same shape (same function)."""
    model = VAE(ModelConfig(image_shape=(1, 28, 28), latent_dim=20, arch="mlp", hidden=(400,)))
    names = {"fc1": "encoder.1", "fc21": "to_mu", "fc22": "to_logvar", "fc3": "decoder.0", "fc4": "decoder.2"}
    state = {f"{names[k.split('.')[0]]}.{k.split('.')[1]}": v for k, v in example.state_dict().items()}
    model.load_state_dict(state)
    return model.cpu().eval()


def compare_nll(root: Path, example: ExampleVAE, *, k: int, images: int) -> dict[str, float]:
    """Return the importance-weighted test NLL of the example and of the shipped conv model, same K and images."""
    x = load_dataset("mnist", root=str(root), download=False).test_x[:images]
    result = {"example_nll": iwae_nll(as_vae_core(example), x, k=k)}
    shipped = REPO_ROOT / "checkpoints" / "mnist-conv-16.pt"
    if shipped.exists():
        result["shipped_conv_nll"] = iwae_nll(load_checkpoint(shipped).model, x, k=k)
    return result


def run_ours(
    root: Path, *, epochs: int, max_epochs: int, target: float, device: torch.device
) -> list[EpochStats]:
    """Train ``vae_core``'s MLP VAE with ``fit``; go past ``epochs`` only until the test loss reaches ``target``."""
    data = load_dataset("mnist", root=str(root), download=False)
    torch.manual_seed(OUR_SEED)
    model = VAE(ModelConfig(image_shape=(1, 28, 28), latent_dim=20, arch="mlp", hidden=(400,)))
    config = TrainConfig(
        dataset="mnist", epochs=max_epochs, batch_size=BATCH_SIZE, lr=LR, seed=OUR_SEED, device=device.type
    )
    stop = threading.Event()
    stats: list[EpochStats] = []
    # fit reports wall time only; read the CPU clock from its epoch start to its last step
    # (on_step runs after each step, on_epoch after the test evaluation).
    clock = {"start": time.process_time(), "train": 0.0}

    def on_step(info: StepInfo) -> None:
        if info.step == info.steps_per_epoch:
            clock["train"] = time.process_time() - clock["start"]

    def on_epoch(record: dict[str, float], _model: VAE) -> None:
        stats.append(
            EpochStats(
                epoch=int(record["epoch"]),
                train_loss=record["train_total"],
                test_loss=record["val_total"],
                images=round(record["images_per_second"] * record["seconds"]),
                seconds=record["seconds"],
                cpu_seconds=clock["train"],
            )
        )
        _print_epoch("vae_core", stats[-1], epochs)
        if stats[-1].epoch >= epochs and stats[-1].test_loss <= target:
            stop.set()
        clock["start"] = time.process_time()

    fit(model, data, config, on_step=on_step, on_epoch=on_epoch, stop=stop)
    return stats


def flop_limit(device: torch.device, *, repeats: int = 50) -> dict[str, float]:
    """Time the matrix products of one batch-128 training step of the 784-400-20 MLP alone.

    Forward: x W for each of the five layers (the two 400->20 heads as one 400->40 product);
    backward: the weight gradient of each and the input gradient of all but the first (the
    images need none). Elementwise work, the optimizer and Python are left out, so this is the
    fastest a step could go on this device with torch's current thread count. Returns the median time.
    """
    layers = [(784, 400), (400, 40), (20, 400), (400, 784)]
    gen = torch.Generator().manual_seed(0)
    mats = [
        (
            torch.randn(BATCH_SIZE, a, generator=gen),
            torch.randn(a, b, generator=gen),
            torch.randn(BATCH_SIZE, b, generator=gen),
        )
        for a, b in layers
    ]
    mats = [tuple(t.to(device) for t in m) for m in mats]

    def step() -> None:
        for i, (h, w, g) in enumerate(mats):
            torch.mm(h, w)  # forward
            torch.mm(h.t(), g)  # weight gradient
            if i:
                torch.mm(g, w.t())  # input gradient

    times = []
    for i in range(repeats + 10):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 10:  # warm-up
            times.append(time.perf_counter() - start)
    flop = sum(2 * BATCH_SIZE * a * b * (3 if i else 2) for i, (a, b) in enumerate(layers))
    seconds = statistics.median(times)
    return {"matmul_ms": 1000 * seconds, "gflop": flop / 1e9, "gflops": flop / 1e9 / seconds}


def summarize(name: str, stats: list[EpochStats], *, compared_epochs: int, target: float) -> RunSummary:
    """Sum throughput over the first ``compared_epochs`` epochs and find when ``target`` was first reached."""
    compared = stats[:compared_epochs]
    images = sum(s.images for s in compared)
    train_seconds = sum(s.seconds for s in compared)
    train_cpu_seconds = sum(s.cpu_seconds for s in compared)
    wall = cpu = 0.0
    target_epoch = seconds_to_target = cpu_seconds_to_target = None
    for s in stats:
        wall, cpu = wall + s.seconds, cpu + s.cpu_seconds
        if s.test_loss <= target:
            target_epoch, seconds_to_target, cpu_seconds_to_target = s.epoch, wall, cpu
            break
    return RunSummary(
        name=name,
        epochs=stats,
        compared_epochs=len(compared),
        train_images=images,
        train_seconds=train_seconds,
        train_cpu_seconds=train_cpu_seconds,
        images_per_second=images / train_seconds,
        images_per_cpu_second=images / train_cpu_seconds,
        test_loss=compared[-1].test_loss,
        target_epoch=target_epoch,
        seconds_to_target=seconds_to_target,
        cpu_seconds_to_target=cpu_seconds_to_target,
    )


def _print_epoch(name: str, s: EpochStats, epochs: int) -> None:
    of = f"/{epochs}" if s.epoch <= epochs else " (extra, chasing the target)"
    print(
        f"  {name:<8} epoch {s.epoch:>2}{of}: {s.seconds:6.2f} s ({s.cpu_seconds:6.2f} CPU s), "
        f"{s.images_per_second:7,.0f} images/s, "
        f"train {s.train_loss:7.2f}, test {s.test_loss:7.2f} nats",
        flush=True,
    )


def _print_table(example: RunSummary, ours: RunSummary, *, epochs: int, target: float) -> None:
    def num(value: float | None, fmt: str) -> str:
        return "not reached" if value is None else format(value, fmt)

    def ratio(a: float | None, b: float | None) -> str:
        return "" if not a or not b else f"{a / b:.2f}x"

    rows = [
        ("images/s (wall clock)", example.images_per_second, ours.images_per_second, ",.0f", True),
        ("images per CPU-second", example.images_per_cpu_second, ours.images_per_cpu_second, ",.0f", True),
        (f"train time, {epochs} epochs (s)", example.train_seconds, ours.train_seconds, ".2f", False),
        (f"test loss after epoch {epochs} (nats)", example.test_loss, ours.test_loss, ".2f", None),
        (
            f"time to {target:.2f} nats (wall s)",
            example.seconds_to_target,
            ours.seconds_to_target,
            ".2f",
            False,
        ),
        (
            f"time to {target:.2f} nats (CPU s)",
            example.cpu_seconds_to_target,
            ours.cpu_seconds_to_target,
            ".2f",
            False,
        ),
        ("  reached after epoch", example.target_epoch, ours.target_epoch, "d", None),
    ]
    header = f"{'':<36}{'example':>12}{'vae_core':>12}{'speed-up':>10}"
    print()
    print(header)
    print("-" * len(header))
    for label, a, b, fmt, higher_is_better in rows:
        if higher_is_better is None:
            gain = ""
        else:
            gain = ratio(b, a) if higher_is_better else ratio(a, b)
        print(f"{label:<36}{num(a, fmt):>12}{num(b, fmt):>12}{gain:>10}")
    print("-" * len(header))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    default_root = os.environ.get("VAE_DATA_DIR") or str(REPO_ROOT.parent / "shared" / "datasets")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", default=default_root, help="torchvision root with MNIST/raw (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=10, help="epochs to compare (default: %(default)s)")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="cap on vae_core's epochs (default: 3x --epochs)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="device for both runs (default: cpu)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="alternating rounds (example, vae_core) whose median is reported (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 epochs, 1 round, no NLL: a smoke run, not a measurement"
    )
    parser.add_argument(
        "--nll-k",
        type=int,
        default=200,
        help="importance samples for the NLL comparison with the shipped conv model (0: skip; default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="JSON results file (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.rounds, args.nll_k = 2, 1, 0
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    args.max_epochs = args.max_epochs or 3 * args.epochs
    if args.max_epochs < args.epochs:
        parser.error(f"--max-epochs ({args.max_epochs}) must be >= --epochs ({args.epochs})")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    root = Path(args.data_dir).expanduser()
    raw = root / "MNIST" / "raw"
    missing = [name for name in MNIST_FILES if not (raw / name).is_file()]
    if missing:
        print(
            f"train_speed: MNIST not found: {raw} lacks {', '.join(missing)}.\n"
            "Point --data-dir (or $VAE_DATA_DIR) at a torchvision root that holds MNIST/raw/ "
            "(on the project's machines: ../shared/datasets).",
            file=sys.stderr,
        )
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("train_speed: --device cuda was asked for, but no CUDA GPU is available", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(
        f"train_speed: MLP VAE 784-400-20, batch {BATCH_SIZE}, Adam lr {LR}, {args.epochs} epochs, "
        f"{device.type}, {torch.get_num_threads()} threads, torch {torch.__version__}, data {root}",
        flush=True,
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > 0.5:
        print(
            f"  warning: the load average is {load:.1f}; other processes compete for the CPU, so the "
            "figures will be noisy (and much worse with more threads than idle cores)",
            flush=True,
        )
    rounds: list[tuple[RunSummary, RunSummary]] = []
    try:
        for number in range(1, args.rounds + 1):
            print(f"round {number}/{args.rounds}", flush=True)
            example_stats, example_model = run_example(root, epochs=args.epochs, device=device)
            target = example_stats[-1].test_loss
            print(
                f"  target: the example's test loss after epoch {args.epochs} = {target:.2f} nats", flush=True
            )
            our_stats = run_ours(
                root, epochs=args.epochs, max_epochs=args.max_epochs, target=target, device=device
            )
            example = summarize("example", example_stats, compared_epochs=args.epochs, target=target)
            ours = summarize("vae_core", our_stats, compared_epochs=args.epochs, target=target)
            rounds.append((example, ours))
            print(
                f"  round {number}: vae_core {ours.images_per_second:,.0f} images/s, example "
                f"{example.images_per_second:,.0f}: {ours.images_per_second / example.images_per_second:.2f}x",
                flush=True,
            )
    except DatasetUnavailable as exc:
        print(f"train_speed: could not load MNIST from {root}: {exc}", file=sys.stderr)
        return 2

    # The round whose ratio is the median stands for the run (its table is printed).
    ratios = [ours.images_per_second / example.images_per_second for example, ours in rounds]
    cpu_ratios = [ours.images_per_cpu_second / example.images_per_cpu_second for example, ours in rounds]
    middle = sorted(range(len(rounds)), key=ratios.__getitem__)[len(rounds) // 2]
    example, ours = rounds[middle]
    target = example.epochs[args.epochs - 1].test_loss
    print(f"\nthe median round ({middle + 1} of {len(rounds)}):")
    _print_table(example, ours, epochs=args.epochs, target=target)
    ratio, cpu_ratio = statistics.median(ratios), statistics.median(cpu_ratios)
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(
        f"images/s ratio (vae_core / example), median of {len(rounds)} alternating rounds: {ratio:.2f}x "
        f"(rounds: {', '.join(f'{r:.2f}x' for r in ratios)}), target >= {TARGET_RATIO:.0f}x: {verdict}; "
        f"per CPU-second {cpu_ratio:.2f}x"
    )
    limit = flop_limit(device)
    step_ms = 1000 * BATCH_SIZE / statistics.median(o.images_per_second for _, o in rounds)
    print(
        f"vae_core: {step_ms:.2f} ms per batch-{BATCH_SIZE} step (median); its matrix products alone take "
        f"{limit['matmul_ms']:.2f} ms ({limit['gflop']:.2f} GFLOP at {limit['gflops']:.0f} GFLOP/s): "
        f"{limit['matmul_ms'] / step_ms:.0%} of the FLOP limit"
    )
    nll = {}
    if args.nll_k > 0:
        print(
            f"\nimportance-weighted test NLL, K={args.nll_k}, first {NLL_IMAGES:,} test images:", flush=True
        )
        nll = compare_nll(root, example_model, k=args.nll_k, images=NLL_IMAGES)
        print(f"  the example after {args.epochs} epochs   {nll['example_nll']:8.2f} nats")
        if "shipped_conv_nll" in nll:
            print(f"  shipped mnist-conv-16.pt       {nll['shipped_conv_nll']:8.2f} nats")

    result = {
        "benchmark": "train_speed",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "epochs": args.epochs,
        "rounds": args.rounds,
        "batch_size": BATCH_SIZE,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
        "train_images_per_epoch": example.epochs[0].images,
        "images_per_second_ratio": ratio,
        "images_per_second_ratios": ratios,
        "images_per_cpu_second_ratio": cpu_ratio,
        "images_per_cpu_second_ratios": cpu_ratios,
        "target_ratio": TARGET_RATIO,
        "median_images_per_second": {
            "example": statistics.median(e.images_per_second for e, _ in rounds),
            "vae_core": statistics.median(o.images_per_second for _, o in rounds),
        },
        "vae_core_ms_per_step": step_ms,
        "flop_limit": limit,
        "median_round": middle + 1,
        "rounds_detail": [[asdict(e), asdict(o)] for e, o in rounds],
        "nll": {**nll, "k": args.nll_k, "images": NLL_IMAGES},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
