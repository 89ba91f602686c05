"""Server paths: folder datasets only below the allowed roots, bounded walks, one message outside; safe zips."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from vae_core import archives, folders
from vae_core.archives import ArchiveError, extract_images
from vae_core.datasets import DatasetUnavailable, dataset_info, load_dataset
from vae_core.folders import allowed_roots, listens_locally, refused_message, resolve_folder


def png(value: int, size: tuple[int, int] = (12, 10)) -> bytes:
    out = io.BytesIO()
    Image.new("L", size, value).save(out, format="PNG")
    return out.getvalue()


def write_images(folder: Path, n: int, value: int = 80) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i}.png").write_bytes(png(value))


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """An allowed root with a class folder, and an outside folder full of 'server' images."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    write_images(allowed / "mine" / "cats", 3, 40)
    write_images(allowed / "mine" / "dogs", 3, 200)
    write_images(outside / "secret", 4)
    (outside / "empty").mkdir()
    return {"root": allowed.resolve(), "outside": outside}


# --- where folders may be --------------------------------------------------------------------------


def test_roots_are_the_data_dir_and_home_on_localhost_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data, home = tmp_path / "data", tmp_path / "home"
    monkeypatch.delenv(folders.FOLDER_ROOTS_ENV, raising=False)
    monkeypatch.setenv("VAE_DATA_DIR", str(data))
    monkeypatch.setenv("HOME", str(home))
    for local in ("localhost", "127.0.0.1", "127.0.0.53", "::1", "[::1]", " LOCALHOST "):
        assert listens_locally(local)
        assert allowed_roots(address=local) == (data.resolve(), home.resolve())
    for public in (None, "", "0.0.0.0", "::", "192.168.1.5", "example.org"):
        assert not listens_locally(public)
        assert allowed_roots(address=public) == ()
    # The operator's list wins either way; set but empty allows no folder at all; /proc is never a root.
    monkeypatch.setenv(
        folders.FOLDER_ROOTS_ENV, os.pathsep.join([str(data), "/proc", str(tmp_path / "x" / "..")])
    )
    assert allowed_roots(address=None) == (data.resolve(), tmp_path.resolve())
    monkeypatch.setenv(folders.FOLDER_ROOTS_ENV, "")
    assert allowed_roots(address="localhost") == ()


def test_a_folder_inside_the_roots_loads(tree: dict[str, Path]) -> None:
    roots = (tree["root"],)
    splits = load_dataset(f"folder:{tree['root']}/mine/cats/../", folder_roots=roots)
    assert splits.class_names == ("cats", "dogs")
    assert splits.name == f"folder:{tree['root'] / 'mine'}"
    assert dataset_info(f"folder:{tree['root']}/mine", folder_roots=roots).class_names == ("cats", "dogs")


def outside_paths(tree: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    root, outside = tree["root"], tree["outside"]
    (root / "escape").symlink_to(outside / "secret")
    (outside / "plain.png").write_bytes(png(9))
    return {
        "root's home": "/root",
        "nonexistent": "/nonexistent",
        "server images": str(outside / "secret"),
        "empty folder": str(outside / "empty"),
        "a file": str(outside / "plain.png"),
        "dot-dot": f"{root}/../outside/secret",
        "link out of the root": str(root / "escape"),
        "the filesystem": "/",
        "proc": "/proc",
        "a pid": f"/proc/{os.getpid()}",
        "tilde user": "~root",
        "unknown tilde user": "~no-such-user-here",
        "relative": "outside/secret",
        "a NUL byte": "/tmp/a\x00b",
    }


def test_every_path_outside_the_roots_gets_the_same_message_without_a_look(
    tree: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roots = (tree["root"],)
    paths = outside_paths(tree, tmp_path)
    monkeypatch.chdir(tmp_path)

    def no_look(*args, **kwargs):
        raise AssertionError("a refused path was looked at")

    monkeypatch.setattr(folders.os, "scandir", no_look)
    monkeypatch.setattr(Path, "is_dir", no_look)
    messages = set()
    for path in paths.values():
        with pytest.raises(DatasetUnavailable) as err:
            load_dataset(f"folder:{path}", folder_roots=roots)
        messages.add(str(err.value))
        with pytest.raises(DatasetUnavailable) as err:
            dataset_info(f"folder:{path}", folder_roots=roots)
        messages.add(str(err.value))
    assert messages == {refused_message(roots)}
    message = messages.pop().replace(str(tree["root"]), "ROOT")  # the roots are named, nothing else
    assert "outside" not in message and "secret" not in message and "/root" not in message
    assert "exist" not in message and "no images" not in message and "readable" not in message
    assert "VAE_FOLDER_ROOTS" in message and "zip" in message
    # With no roots (a server listening beyond localhost) every folder is refused, also inside the data dir.
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset(f"folder:{tree['root']}/mine", folder_roots=())
    assert str(err.value) == refused_message(()) and "reads no folders" in str(err.value)


def test_the_command_line_reads_anywhere_but_proc_sys_and_dev(tree: dict[str, Path]) -> None:
    assert resolve_folder(tree["outside"] / "secret") == (tree["outside"] / "secret").resolve()
    for path in ("/proc", "/proc/self", "/sys/kernel", "/dev/shm", "/dev/../proc/1"):
        with pytest.raises(DatasetUnavailable, match="never read"):
            load_dataset(f"folder:{path}")


# --- bounded walks ---------------------------------------------------------------------------------


def test_the_walk_never_follows_links_nor_opens_pipes(tree: dict[str, Path]) -> None:
    mine, outside = tree["root"] / "mine", tree["outside"]
    (mine / "cats" / "leak.png").symlink_to(outside / "secret" / "0.png")
    (mine / "stolen").symlink_to(outside / "secret", target_is_directory=True)
    os.mkfifo(mine / "dogs" / "pipe.png")  # reading it would block the loader forever
    started = time.monotonic()
    splits = load_dataset(f"folder:{mine}", folder_roots=(tree["root"],))
    assert time.monotonic() - started < 10
    assert splits.class_names == ("cats", "dogs")
    assert len(splits.train_x) + len(splits.test_x) == 6
    assert "2 symbolic link(s) not followed" in splits.preprocessing


def test_a_file_swapped_for_a_link_after_the_walk_is_not_read(tree: dict[str, Path], monkeypatch) -> None:
    mine = tree["root"] / "mine"
    real = folders.class_folders

    def swap_after_walk(path: Path):
        found = real(path)
        victim = mine / "cats" / "0.png"
        victim.unlink()
        victim.symlink_to(tree["outside"] / "secret" / "0.png")
        return found

    monkeypatch.setattr(folders, "class_folders", swap_after_walk)
    splits = load_dataset(f"folder:{mine}", folder_roots=(tree["root"],))
    assert len(splits.train_x) + len(splits.test_x) == 5
    assert "1 unreadable file(s) skipped" in splits.preprocessing


def test_walk_limits_name_the_limit_and_how_to_raise_it(tree: dict[str, Path], monkeypatch) -> None:
    mine, roots = tree["root"] / "mine", (tree["root"],)
    monkeypatch.setattr(folders, "MAX_FOLDER_IMAGES", 5)
    with pytest.raises(
        DatasetUnavailable, match=r"more than 5 images; the limit is 5.*VAE_FOLDER_MAX_IMAGES"
    ):
        load_dataset(f"folder:{mine}", folder_roots=roots)
    monkeypatch.setattr(folders, "MAX_FOLDER_IMAGES", 100)
    monkeypatch.setattr(folders, "MAX_FOLDER_ENTRIES", 7)
    with pytest.raises(DatasetUnavailable, match=r"more than 7 files and folders.*VAE_FOLDER_MAX_ENTRIES"):
        load_dataset(f"folder:{mine}", folder_roots=roots)
    monkeypatch.setattr(folders, "MAX_FOLDER_ENTRIES", 10_000)
    crowd = tree["root"] / "crowd"
    crowd.mkdir()
    for i in range(600):
        (crowd / f"{i}.txt").touch()
    monkeypatch.setattr(folders, "FOLDER_WALK_SECONDS", 0.0)
    with pytest.raises(DatasetUnavailable, match=r"took longer than 0 s.*VAE_FOLDER_WALK_SECONDS"):
        load_dataset(f"folder:{crowd}", folder_roots=roots)


def test_folders_deeper_than_the_limit_are_not_read(tree: dict[str, Path], monkeypatch) -> None:
    mine = tree["root"] / "mine"
    write_images(mine / "cats" / "a" / "b" / "c", 4)
    monkeypatch.setattr(folders, "MAX_FOLDER_DEPTH", 3)
    splits = load_dataset(f"folder:{mine}", folder_roots=(tree["root"],))
    assert len(splits.train_x) + len(splits.test_x) == 6
    assert "1 folder(s) deeper than 3 levels not read" in splits.preprocessing
    monkeypatch.setattr(folders, "MAX_FOLDER_DEPTH", 4)
    splits = load_dataset(f"folder:{mine}", folder_roots=(tree["root"],))
    assert len(splits.train_x) + len(splits.test_x) == 10


def test_walking_the_whole_filesystem_is_bounded_and_skips_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = os.scandir

    def recording(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(folders.os, "scandir", recording)
    monkeypatch.setattr(folders, "MAX_FOLDER_ENTRIES", 3000)
    started = time.monotonic()
    with pytest.raises(DatasetUnavailable) as err:
        load_dataset("folder:/")
    assert time.monotonic() - started < 10
    assert "FileNotFoundError" not in str(err.value) and "Traceback" not in str(err.value)
    assert seen and not any(s.startswith(("/proc", "/sys", "/dev")) for s in seen)


def test_the_page_check_lists_one_folder_only(tree: dict[str, Path], monkeypatch) -> None:
    calls: list[str] = []
    real = os.scandir

    def counting(path):
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(folders.os, "scandir", counting)
    info = dataset_info(f"folder:{tree['root']}/mine", folder_roots=(tree["root"],))
    assert info.class_names == ("cats", "dogs") and calls == [str(tree["root"] / "mine")]


# --- zips ------------------------------------------------------------------------------------------


def make_zip(entries: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def test_a_zip_of_two_class_folders_gives_two_classes(tmp_path: Path) -> None:
    entries = {
        f"holiday/{c}/{i}.png": png(40 if c == "cats" else 200) for c in ("cats", "dogs") for i in range(4)
    }
    entries |= {
        "holiday/readme.txt": b"hi",
        "__MACOSX/holiday/._0.png": b"junk",
        "holiday/.hidden.png": png(1),
    }
    dest = tmp_path / "session"
    dest.mkdir()
    unpacked = extract_images(make_zip(entries), dest, name="upload")
    assert unpacked.folder == dest / "holiday" and unpacked.images == 8 and unpacked.skipped == 3
    splits = load_dataset(f"folder:{unpacked.folder}", folder_roots=(dest.resolve(),))
    assert splits.class_names == ("cats", "dogs")
    assert len(splits.train_x) + len(splits.test_x) == 8
    # Without a shared top folder the zip's name names the folder; the same name twice keeps the first.
    flat = dest / "flat"
    flat.mkdir()
    again = extract_images(
        make_zip({"cats/1.png": png(1), "dogs/1.png": png(2), "dogs/1.PNG": png(3)}), flat, name="my pics!"
    )
    assert again.folder == flat / "my-pics" and again.images == 3
    assert sorted(p.name for p in (again.folder / "dogs").iterdir()) == ["1.PNG", "1.png"]


@pytest.mark.parametrize(
    "name",
    [
        "../evil.png",
        "cats/../../evil.png",
        "/tmp/evil.png",
        "C:/evil.png",
        "..\\evil.png",
        "cats\\..\\..\\evil.png",
    ],
)
def test_entries_outside_the_folder_refuse_the_zip(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "session" / "inner"
    dest.mkdir(parents=True)
    data = make_zip({"cats/1.png": png(1), name: png(2)})
    with pytest.raises(ArchiveError, match="absolute path|outside its folder"):
        extract_images(data, dest)
    assert not any(dest.iterdir())
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inner", "session"]


def test_a_symlink_entry_refuses_the_zip(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("cats/1.png", png(1))
        link = zipfile.ZipInfo("cats/2.png")
        link.external_attr = (0o120777 << 16) | 0x20
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_images(out.getvalue(), tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_zip_bomb_is_refused_before_anything_is_unpacked(tmp_path: Path, monkeypatch) -> None:
    bomb = make_zip({"cats/1.png": png(1), "cats/huge.bmp": bytes(60 * archives.MB)})
    assert len(bomb) < archives.MB
    started = time.monotonic()
    with pytest.raises(ArchiveError, match="zip bomb.*VAE_ZIP_MAX_RATIO"):
        extract_images(bomb, tmp_path)
    assert time.monotonic() - started < 1.0 and not any(tmp_path.iterdir())
    # Many modest entries: the sum of the unpacked sizes is checked too.
    monkeypatch.setattr(archives, "MAX_ZIP_UNPACKED_BYTES", 10_000)
    stored = make_zip({f"cats/{i}.png": os.urandom(3000) for i in range(4)}, method=zipfile.ZIP_STORED)
    with pytest.raises(ArchiveError, match="unpacks to.*VAE_ZIP_MAX_UNPACKED_MB"):
        extract_images(stored, tmp_path)
    assert not any(tmp_path.iterdir())


def test_too_many_files_or_bytes_refuse_the_zip(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(archives, "MAX_ZIP_ENTRIES", 10)
    many = make_zip({f"cats/{i}.png": png(i) for i in range(11)})
    with pytest.raises(ArchiveError, match="more than 10 files.*VAE_ZIP_MAX_FILES"):
        extract_images(many, tmp_path)
    monkeypatch.setattr(archives, "MAX_ZIP_BYTES", 100)
    with pytest.raises(ArchiveError, match="the limit is.*VAE_ZIP_MAX_MB"):
        extract_images(make_zip({"cats/1.png": png(1)}), tmp_path)
    assert not any(tmp_path.iterdir())


def test_damaged_or_empty_zips_get_a_message(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a zip"):
        extract_images(b"hello, not a zip", tmp_path)
    with pytest.raises(ArchiveError, match="no images"):
        extract_images(make_zip({"notes.txt": b"hi", "cats/": b""}), tmp_path)
    good = make_zip({"cats/1.png": png(1) * 50})
    damaged = bytearray(good)
    damaged[40:80] = bytes(40)  # inside the compressed data
    with pytest.raises(ArchiveError, match="could not be unpacked|not a zip"):
        extract_images(bytes(damaged), tmp_path / "d")
