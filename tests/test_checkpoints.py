"""Checkpoints: save -> load round trips, hostile and broken files refused clearly, atomic saves, safe names."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import resource
import time
import zipfile
from pathlib import Path

import pytest
import torch

import vae_core
from tests.crafted import deflate_bomb, real_checkpoint, stride0_checkpoint
from vae_core import safeload
from vae_core.checkpoints import (
    FORMAT_VERSION,
    CheckpointExists,
    Sample,
    list_checkpoints,
    load_checkpoint,
    read_info,
)
from vae_core.config import ModelConfig, TrainConfig
from vae_core.model import VAE
from vae_core.naming import checkpoint_path, sanitize_name
from vae_core.safeload import CheckpointError
from vae_core.saving import save_checkpoint

CONFIGS = [
    ModelConfig(arch="mlp", latent_dim=2, hidden=(32,)),
    ModelConfig(arch="conv", latent_dim=3, channels=(8, 16)),
    ModelConfig(arch="mlp", latent_dim=2, hidden=(32,), likelihood="gaussian"),
]
HISTORY = [
    {"epoch": 1, "train_total": 210.5, "val_total": 190.25, "kl_weight": 1.0},
    {"epoch": 2, "train_total": 180.0, "val_total": 175.75, "kl_weight": 1.0},
]
METRICS = {"test_total": 98.34, "test_recon": 80.0, "test_kl": 18.34, "test_nll": 95.1, "nll_k": 50}


def _model(config: ModelConfig, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    model = VAE(config)
    if model.log_scale is not None:
        with torch.no_grad():
            model.log_scale.fill_(-0.7)  # not the init value, so a lost parameter shows
    return model


def _sample(config: ModelConfig, n: int = 6) -> Sample:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (n, *config.image_shape), dtype=torch.uint8, generator=gen)
    return Sample(images, torch.arange(n, dtype=torch.int64) % 10)


def _save(path: Path, config: ModelConfig = CONFIGS[0], *, seed: int = 0, **kwargs) -> VAE:
    model = _model(config, seed)
    args = {
        "model": model,
        "train_config": TrainConfig(epochs=2, seed=seed),
        "dataset": "mnist",
        "history": HISTORY,
        **kwargs,
    }
    save_checkpoint(path, **args)
    return model


def _rewrite(src: Path, dst: Path, change) -> None:
    """Load a real checkpoint's dict, let ``change`` edit it, save it again with plain torch.save."""
    payload = torch.load(src, weights_only=True)
    change(payload)
    torch.save(payload, dst)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.arch}-{c.likelihood}")
def test_save_then_load_gives_equal_tensors_and_identical_outputs(tmp_path, config):
    path = tmp_path / "model.pt"
    model = _save(path, config)
    model.eval()
    loaded = load_checkpoint(path)

    assert loaded.info.model_config == config
    want, got = model.state_dict(), loaded.model.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
    # A freshly initialised model differs, so the equalities below test the weights, not the seed.
    other = _model(config, seed=1)
    z = torch.randn(4, config.latent_dim)
    x = torch.rand(4, *config.image_shape)
    assert not torch.equal(other.decode(z), model.decode(z))
    with torch.no_grad():
        assert torch.equal(loaded.model.decode(z), model.decode(z))
        assert torch.equal(loaded.model.encode(x).mu, model.encode(x).mu)
        assert torch.equal(loaded.model.encode(x).logvar, model.encode(x).logvar)
    if config.likelihood == "gaussian":
        assert loaded.model.log_scale.item() == pytest.approx(-0.7)
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_metadata_history_metrics_sample_and_extra_round_trip(tmp_path):
    config = CONFIGS[1]
    sample = _sample(config)
    extra = {
        "shipped": True,
        "seed": 3,
        "split_sizes": {"train": 5000, "test": 2000},
        "notes": "hi",
        "x": None,
    }
    path = tmp_path / "run.pt"
    _save(
        path,
        config,
        preprocessing="scaled to [0, 1]",
        class_names=[str(i) for i in range(10)],
        metrics=METRICS,
        sample=sample,
        extra=extra,
    )
    loaded = load_checkpoint(path)
    info = loaded.info

    assert info.history == tuple(HISTORY)
    assert info.metrics == METRICS
    assert info.extra == extra
    assert info.dataset == "mnist" and info.preprocessing == "scaled to [0, 1]"
    assert info.class_names == tuple(str(i) for i in range(10))
    assert info.train_config == TrainConfig(epochs=2, seed=0)
    assert info.format_version == FORMAT_VERSION and info.package_version == vae_core.__version__
    assert info.created.endswith("+00:00")
    assert info.path == path and info.name == "run" and info.size_bytes == path.stat().st_size
    assert info.epochs == 2 and info.shipped and info.has_sample
    assert info.summary == "mnist · conv · z=3 · 2 epochs · test ELBO 98.3 · NLL 95.1"
    assert hash(info) == hash(read_info(path))  # hashable despite its dict fields, so it can key a cache
    assert torch.equal(loaded.sample.images, sample.images) and loaded.sample.images.dtype == torch.uint8
    assert torch.equal(loaded.sample.labels, sample.labels) and loaded.sample.labels.dtype == torch.int64


def test_a_sliced_sample_saves_only_its_own_images(tmp_path):
    config = CONFIGS[0]
    big = torch.zeros(5000, *config.image_shape, dtype=torch.uint8)
    small, large = tmp_path / "small.pt", tmp_path / "large.pt"
    _save(small, sample=Sample(big[:10].clone(), torch.zeros(10, dtype=torch.long)))
    _save(large, sample=Sample(big[:10], torch.zeros(10, dtype=torch.long)))
    assert large.stat().st_size < small.stat().st_size + 1024


def test_load_accepts_bytes_and_file_objects_and_reads_info_without_a_model(tmp_path):
    path = tmp_path / "m.pt"
    model = _save(path, metrics=METRICS)
    data = path.read_bytes()
    z = torch.randn(3, 2)
    upload = io.BytesIO(data)
    upload.name = "uploaded-model.pt"  # Streamlit's UploadedFile has .name
    for source in (data, io.BytesIO(data), upload):
        loaded = load_checkpoint(source)
        assert loaded.info.path is None
        with torch.no_grad():
            assert torch.equal(loaded.model.decode(z), model.eval().decode(z))
    assert load_checkpoint(upload.getvalue()).info.name == "uploaded file"
    upload.seek(0)
    assert load_checkpoint(upload).info.name == "uploaded-model"
    info = read_info(path)
    assert info.metrics == METRICS and not info.has_sample and not info.shipped


def test_save_refuses_values_a_safe_load_could_not_read(tmp_path):
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match="plain values"):
        _save(path, extra={"fn": print})
    with pytest.raises(ValueError, match="uint8"):
        _save(path, sample=Sample(torch.zeros(2, 1, 28, 28), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match="match the model"):
        _save(path, sample=Sample(torch.zeros(2, 1, 14, 14, dtype=torch.uint8), torch.zeros(2).long()))
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    # numpy-like scalars and 0-d tensors become plain numbers
    _save(path, metrics={"test_total": torch.tensor(97.5)}, extra={"where": tmp_path})
    info = read_info(path)
    assert info.metrics == {"test_total": 97.5} and info.extra == {"where": str(tmp_path)}


def test_save_refuses_nan_weights(tmp_path):
    model = _model(CONFIGS[0])
    with torch.no_grad():
        model.to_mu.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        save_checkpoint(tmp_path / "m.pt", model=model, train_config=None, dataset="mnist", history=[])


def _state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k].cpu()) for k in a)


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "no-hard-links"])
def test_two_savers_racing_for_one_name_exactly_one_wins(tmp_path, monkeypatch, hard_links):
    # Issue 12, F4: both sessions passed the name check, then both wrote; the second silently replaced
    # the first. Now the name is claimed when the file is published: one save wins, the other is told.
    import threading

    from vae_core import saving

    if not hard_links:  # a filesystem that refuses link(2): the exclusive-create fallback
        monkeypatch.setattr(saving.os, "link", lambda *a: (_ for _ in ()).throw(PermissionError("no links")))
    both_written = threading.Barrier(2, timeout=30)
    publish = saving._publish_exclusive

    def publish_together(tmp_name, path):
        both_written.wait()  # each saver passed the early check and wrote its temporary file
        publish(tmp_name, path)

    monkeypatch.setattr(saving, "_publish_exclusive", publish_together)
    target = tmp_path / "race.pt"
    models = {seed: _model(CONFIGS[0], seed) for seed in (1, 2)}
    outcome: dict[int, object] = {}

    def save(seed: int) -> None:
        try:
            outcome[seed] = save_checkpoint(
                target, model=models[seed], train_config=None, dataset="mnist", history=[], overwrite=False
            )
        except CheckpointExists as exc:
            outcome[seed] = exc

    threads = [threading.Thread(target=save, args=(seed,)) for seed in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    winners = [seed for seed, result in outcome.items() if result == target]
    losers = [result for result in outcome.values() if isinstance(result, CheckpointExists)]
    assert len(winners) == 1 and len(losers) == 1, outcome
    assert "name taken" in str(losers[0]) and "nothing was overwritten" in str(losers[0])
    assert _state_equal(load_checkpoint(target).model.state_dict(), models[winners[0]].state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race.pt"]  # no temporary file left behind


def test_a_save_that_may_not_overwrite_keeps_the_existing_file(tmp_path):
    target = tmp_path / "kept.pt"
    first = _save(target, seed=1)
    with pytest.raises(CheckpointExists, match="name taken"):
        _save(target, seed=2, overwrite=False)
    assert _state_equal(load_checkpoint(target).model.state_dict(), first.state_dict())
    second = _save(target, seed=2, overwrite=True)
    assert _state_equal(load_checkpoint(target).model.state_dict(), second.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.pt"]


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload_cls", [_Exec, _System], ids=["exec", "os.system"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dumps", "pickle-protocol-2"])
def test_a_file_whose_unpickling_runs_code_is_refused_and_the_code_never_runs(tmp_path, payload_cls, writer):
    marker = tmp_path / "pwned"
    evil = payload_cls(marker)
    path = tmp_path / "evil.pt"
    if writer == "torch.save":
        torch.save({"format": "vae-explorer-checkpoint", "format_version": 1, "x": evil}, path)
    else:
        path.write_bytes(pickle.dumps({"x": evil}, protocol=2 if writer.endswith("2") else 4))

    for load in (load_checkpoint, read_info, lambda p: load_checkpoint(p.read_bytes())):
        with pytest.raises(
            CheckpointError, match="refused: this file contains Python objects that could run"
        ):
            load(path)
    assert [b.reason for b in list_checkpoints(tmp_path).bad] and "refused" in list_checkpoints(tmp_path).bad[
        0
    ].reason
    assert not marker.exists()

    # The payload is live: an unrestricted unpickler does run it (so the assertions above mean something).
    if writer == "torch.save":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def test_torch_restricted_unpickler_is_the_second_line_of_defence(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"x": _Exec(marker)}, path)
    # Pretend the opcode scan missed it: torch.load(weights_only=True) must still refuse.
    monkeypatch.setattr(safeload, "_pickle_names_code", lambda data: False)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_files_are_reported_as_truncated_or_corrupt(tmp_path):
    good = tmp_path / "good.pt"
    _save(good)
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated or corrupt"):
            load_checkpoint(bad)


def test_random_bytes_empty_files_and_text_files_are_not_checkpoints(tmp_path):
    cases = {
        "random.pt": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        .to(torch.uint8)
        .numpy()
        .tobytes(),
        "text.pt": b"hello, this is a text file\n" * 10,
        "zip.pt": b"PK\x03\x04" + b"\x00" * 100,
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError) as err:
            load_checkpoint(tmp_path / name)
        assert name in str(err.value)
        assert "not a vae-explorer checkpoint" in str(err.value) or "truncated or corrupt" in str(err.value)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(tmp_path / "empty.pt")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)


def test_other_torch_files_are_not_vae_explorer_checkpoints(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(_model(CONFIGS[0]).state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a vae-explorer checkpoint: it is a bare state_dict"):
        load_checkpoint(bare)
    other = tmp_path / "other.pt"
    torch.save({"epoch": 3, "weights": [torch.zeros(2)]}, other)
    with pytest.raises(CheckpointError, match="no 'format' field"):
        load_checkpoint(other)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="holds a Tensor"):
        load_checkpoint(tensor)
    legacy = tmp_path / "legacy.pt"
    torch.save({"a": 1}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not a PyTorch zip file"):
        load_checkpoint(legacy)


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    good, future = tmp_path / "good.pt", tmp_path / "future.pt"
    _save(good)
    _rewrite(good, future, lambda p: p.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(CheckpointError, match=r"newer version .*format 2.*reads format 1; upgrade"):
        load_checkpoint(future)
    _rewrite(good, future, lambda p: p.update(format_version="one"))
    with pytest.raises(CheckpointError, match="unknown checkpoint format version"):
        load_checkpoint(future)


def test_weights_that_do_not_fit_the_config_name_the_key_and_shapes(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    _save(good)

    def widen(payload):
        payload["model_config"]["latent_dim"] = 5

    _rewrite(good, bad, widen)
    for load in (load_checkpoint, read_info):
        with pytest.raises(
            CheckpointError,
            match=r"to_mu\.weight has shape \(2, 32\) in the file, but the model config needs \(5, 32\)",
        ):
            load(bad)

    _rewrite(good, bad, lambda p: p["state_dict"].pop("to_logvar.bias"))
    with pytest.raises(CheckpointError, match=r"missing to_logvar\.bias"):
        load_checkpoint(bad)
    _rewrite(good, bad, lambda p: p["state_dict"].update(extra_layer=torch.zeros(1)))
    with pytest.raises(CheckpointError, match="unexpected extra_layer"):
        load_checkpoint(bad)
    _rewrite(good, bad, lambda p: p["model_config"].update(arch="transformer"))
    with pytest.raises(CheckpointError, match="invalid model config: arch must be one of"):
        load_checkpoint(bad)


def test_nan_weights_are_refused_on_load(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    _save(good)
    _rewrite(good, bad, lambda p: p["state_dict"]["to_mu.bias"].fill_(float("inf")))
    with pytest.raises(CheckpointError, match=r"NaN/inf weights \(in 'to_mu.bias'\)"):
        load_checkpoint(bad)


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    _save(path)
    monkeypatch.setenv("VAE_MAX_CHECKPOINT_MB", "0.001")  # about 1 KB
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        with pytest.raises(CheckpointError, match=r"more than the limit of 0\.001 MB.*VAE_MAX_CHECKPOINT_MB"):
            load_checkpoint(source)


def test_a_failed_rename_leaves_the_previous_checkpoint_intact_and_no_temp_files(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    old = _save(path, seed=0, metrics={"test_total": 1.0}).eval()
    before = path.read_bytes()
    written = []

    def broken_replace(src, dst):
        written.append(Path(src).stat().st_size)  # the temp file is complete when the rename fails
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        _save(path, seed=1, metrics={"test_total": 2.0})
    monkeypatch.undo()

    assert written and written[0] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert path.read_bytes() == before
    loaded = load_checkpoint(path)
    assert loaded.info.metrics == {"test_total": 1.0}
    z = torch.randn(2, 2)
    with torch.no_grad():
        assert torch.equal(loaded.model.decode(z), old.decode(z))


def test_a_failure_while_writing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "model.pt"
    _save(path, metrics={"test_total": 1.0})

    def half_save(obj, f):
        f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", half_save)
    with pytest.raises(KeyboardInterrupt):
        _save(path, metrics={"test_total": 2.0})
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]
    assert read_info(path).metrics == {"test_total": 1.0}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "etc-passwd"),
        ("a/b", "a-b"),
        ("a\\b", "a-b"),
        ("  My Model!!", "My-Model"),
        ("model.pt", "model"),
        ("model.pt.pt", "model"),
        ("Model .PT.", "Model"),
        (".hidden", "hidden"),
        ("a..b", "a.b"),
        ("x" * 300, "x" * 64),
        ("CON", "CON-model"),
        ("modèle über", "modele-uber"),
        ("run_3.v2", "run_3.v2"),
    ],
)
def test_sanitize_name_keeps_names_inside_the_folder(name, expected):
    stem = sanitize_name(name)
    assert stem == expected
    assert "/" not in stem and "\\" not in stem and ".." not in stem and len(stem) <= 64


@pytest.mark.parametrize("name", ["", "  ", "..", "/", "模型", "...---", ".pt", "-.PT."])
def test_sanitize_name_refuses_names_without_letters_or_digits(name):
    with pytest.raises(ValueError, match="choose a name with letters or digits"):
        sanitize_name(name)


def test_checkpoint_path_refuses_overwrites_and_shipped_models(tmp_path):
    target = checkpoint_path(tmp_path, "../My Model")
    assert target == tmp_path.resolve() / "My-Model.pt"
    _save(target)
    with pytest.raises(CheckpointExists, match="already exists"):
        checkpoint_path(tmp_path, "My Model")
    assert checkpoint_path(tmp_path, "My Model", overwrite=True) == target

    shipped = tmp_path / "mnist-conv.pt"
    _save(shipped, extra={"shipped": True})
    with pytest.raises(CheckpointExists, match="shipped"):
        checkpoint_path(tmp_path, "mnist-conv", overwrite=True)
    assert checkpoint_path(tmp_path, "mnist-conv", overwrite=True, allow_shipped=True) == shipped


def test_checkpoint_path_refuses_a_symlink_out_of_the_folder(tmp_path):
    folder, outside = tmp_path / "ckpts", tmp_path / "outside.pt"
    folder.mkdir()
    outside.write_bytes(b"precious")
    (folder / "link.pt").symlink_to(outside)
    with pytest.raises(CheckpointError, match="outside"):
        checkpoint_path(folder, "link", overwrite=True)


def test_list_checkpoints_separates_good_and_bad_files(tmp_path):
    _save(tmp_path / "b-good.pt", metrics=METRICS)
    _save(tmp_path / "a-good.pt")
    (tmp_path / "c-bad.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".b-good.pt.x1y2.tmp").write_bytes(b"leftover temp")

    listing = list_checkpoints(tmp_path)
    assert [info.name for info in listing.good] == ["a-good", "b-good"]
    assert listing.good[1].metrics == METRICS
    assert [bad.path.name for bad in listing.bad] == ["c-bad.pt"]
    assert "not a vae-explorer checkpoint" in listing.bad[0].reason
    assert list_checkpoints(tmp_path / "missing") == ([], [])


# Issue 12, F2: files of a few KB or MB that asked for gigabytes. Each is refused with a clear
# message within a second, before the model is built or the archive unpacked, memory unchanged.


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _refused_quickly(source, match: str) -> None:
    before, started = _maxrss_mb(), time.perf_counter()
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(source)
    assert time.perf_counter() - started < 1.0
    assert _maxrss_mb() - before < 100, "the refusal must not allocate what the file claims"


@pytest.mark.parametrize(
    "config", [{"hidden": (10**6,)}, {"hidden": (10**7,)}, {"latent_dim": 10**7}, {"latent_dim": 10**5}]
)
def test_a_few_kb_of_stride0_weights_with_a_huge_config_is_refused(tmp_path, config):
    # F2 (a): the 5 KB file whose model then allocated 6.3 GB (or raised an uncaught RuntimeError).
    path = stride0_checkpoint(tmp_path / "huge.pt", **config)
    assert path.stat().st_size < 20_000
    for source in (path, path.read_bytes(), io.BytesIO(path.read_bytes())):
        _refused_quickly(source, r"is a view \(shape .*strides \(0")
    with pytest.raises(CheckpointError, match="is a view"):
        read_info(path)
    assert [bad.path.name for bad in list_checkpoints(tmp_path).bad] == ["huge.pt"]


def test_a_config_past_the_limits_is_refused_before_the_weights_are_looked_at(tmp_path):
    path = tmp_path / "wide.pt"
    real_checkpoint(path)
    _rewrite(path, path, lambda p: p["model_config"].update(latent_dim=10**7))
    _refused_quickly(path, r"too large for this machine: latent_dim asks for 10,000,000 .*VAE_MAX_LATENT_DIM")


def test_a_model_within_raised_limits_loads(tmp_path, monkeypatch):
    path = tmp_path / "big.pt"
    _save(path, ModelConfig(arch="mlp", latent_dim=2, hidden=(64,)))
    monkeypatch.setenv("VAE_MAX_WIDTH", "32")
    with pytest.raises(CheckpointError, match="VAE_MAX_WIDTH"):
        load_checkpoint(path)
    monkeypatch.setenv("VAE_MAX_WIDTH", "64")
    assert load_checkpoint(path).model.config.hidden == (64,)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda w: w.t().contiguous().t(),
            r"'encoder.1.weight'\] is a view \(shape \(32, 784\), strides \(1, 32\)",
        ),
        (lambda w: torch.zeros(2 * w.numel())[: w.numel()].view(w.shape), "storage holds 200,704 bytes"),
        (lambda w: torch.zeros(w.numel() + 1)[1:].view(w.shape), r"'encoder.1.weight'\] is a view"),
        (lambda w: w.to(torch.int32), "weight encoder.1.weight is torch.int32, not a floating-point type"),
    ],
    ids=["transposed", "slice-of-a-larger-storage", "offset", "integer"],
)
def test_each_weight_must_be_a_plain_float_block_of_its_own(tmp_path, change, match):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    _save(good)
    _rewrite(
        good,
        bad,
        lambda p: p["state_dict"].update({"encoder.1.weight": change(p["state_dict"]["encoder.1.weight"])}),
    )
    _refused_quickly(bad, match)


def test_a_bundled_sample_that_claims_more_than_it_stores_is_refused(tmp_path):
    good, bad = tmp_path / "good.pt", tmp_path / "bad.pt"
    real_checkpoint(good)
    expanded = torch.zeros(1, dtype=torch.uint8).expand(10**6, 1, 28, 28)
    _rewrite(
        good, bad, lambda p: p["sample"].update(images=expanded, labels=torch.zeros(10**6, dtype=torch.int64))
    )
    _refused_quickly(bad, r"sample\['images'\] is a view")


def test_a_deflate_bomb_is_refused_before_anything_is_unpacked(tmp_path):
    # F2 (b): a 3.2 MB file holding a 3 GiB deflated storage entry, which torch.load unpacked first.
    bomb = deflate_bomb(real_checkpoint(tmp_path / "ok.pt"), tmp_path / "bomb.pt", gib=3)
    assert bomb.stat().st_size < 5 * 1024**2
    with zipfile.ZipFile(bomb) as archive:
        assert max(i.file_size for i in archive.infolist()) == 3 * 1024**3
    message = r"bomb.pt: its entry 'archive/data/\d+' unpacks to 3,072 MB, more than the limit of 1,024 MB.*VAE_MAX_UNPACKED_MB"
    _refused_quickly(bomb, message)
    for source in (bomb.read_bytes(), io.BytesIO(bomb.read_bytes())):
        _refused_quickly(source, "unpacks to 3,072 MB")
    with pytest.raises(CheckpointError, match="unpacks to"):
        read_info(bomb)


def test_entries_that_unpack_past_the_limit_only_together_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    _save(path)
    with zipfile.ZipFile(path) as archive:
        sizes = [i.file_size for i in archive.infolist()]
    monkeypatch.setenv("VAE_MAX_UNPACKED_MB", str((max(sizes) + 1) / 1024**2))
    with pytest.raises(CheckpointError, match="its entries unpack in all to .*VAE_MAX_UNPACKED_MB"):
        load_checkpoint(path)
    monkeypatch.setenv("VAE_MAX_UNPACKED_MB", str(sum(sizes) / 1024**2))
    assert load_checkpoint(path).info.name == "m"


def test_a_file_that_breaks_the_reader_in_another_way_is_listed_as_unreadable(tmp_path, monkeypatch):
    from vae_core import checkpoints

    _save(tmp_path / "fine.pt")
    real = checkpoints.read_info

    def flaky(path):
        if Path(path).name == "odd.pt":
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: not enough memory")
        return real(path)

    _save(tmp_path / "odd.pt")
    monkeypatch.setattr(checkpoints, "read_info", flaky)
    listing = list_checkpoints(tmp_path)
    assert [i.name for i in listing.good] == ["fine"]
    assert listing.bad[0].reason.startswith("odd.pt: could not be read (RuntimeError: [enforce fail")
