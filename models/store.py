"""The version store: served pairs of an encoder and (optionally) an adapter, promoted and rolled back atomically.

Layout under a root (``checkpoints/`` by default)::

    versions/<version>/encoder    an encoder checkpoint
    versions/<version>/adapter    its LoRA adapter (optional; carried forward when a retrain does not train one)
    default -> versions/<version> the served pointer: a symlink, switched by rename
    history.json                  every promotion, newest last
    .lock                         serialises promotions, rollbacks and pruning between processes

A version folder is complete before it appears (written beside it, then renamed) and is never edited afterwards:
recalibrating makes a new version. Every switch and write is a write + fsync + rename, so ``kill -9`` at any moment
leaves the pointer on a whole version and ``history.json`` valid JSON.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from models.checkpoint import atomic_folder, atomic_write_text, fsync_dir, read_manifest
from models.errors import CheckpointError, DataError
from models.prompt import PROMPT_VERSION

logger = logging.getLogger(__name__)

DEFAULT_KEEP = 5


class VersionStore:
    """One store root; see the module docstring for the layout."""

    def __init__(self, root: str | Path, pointer: str = "default", keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise DataError(f"keep must be at least 1 version; got {keep}")
        self.root = Path(root)
        self.pointer = pointer
        self.keep = keep

    @property
    def link(self) -> Path:
        return self.root / self.pointer

    @property
    def versions(self) -> Path:
        return self.root / "versions"

    @property
    def history_file(self) -> Path:
        return self.root / "history.json"

    @classmethod
    def containing(cls, path: str | Path, keep: int = DEFAULT_KEEP) -> tuple[VersionStore, Path] | None:
        """The store and version folder that ``path`` (a version, or its encoder/adapter) lives in, if any.

        ``checkpoints/default/encoder`` resolves through the pointer to ``checkpoints/versions/<v>/encoder``.
        """
        resolved = Path(path).resolve()
        for version in (resolved, resolved.parent):
            if version.parent.name == "versions" and version.parent.parent.is_dir():
                root = version.parent.parent
                pointers = [p.name for p in root.iterdir() if p.is_symlink()]
                return cls(root, pointers[0] if len(pointers) == 1 else "default", keep), version
        return None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock file (an exclusive ``flock``; released by the kernel if the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def served(self) -> Path | None:
        """The version folder the pointer serves; a plain folder there (``build-default`` before versions) is
        moved under ``versions/`` and pointed at first."""
        with self.locked():
            if self.link.is_symlink():
                return self.link.resolve()
            if not self.link.exists():
                return None
            version = read_manifest(self.link / "encoder", kind="encoder").version
            target = self.versions / version
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.link, target)
            self._switch(target)
            logger.info("moved %s to %s and made %s a pointer to it", self.link, target, self.link)
            return target

    def new_version_name(self, tag: str = "") -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        name = f"{stamp}-{tag}" if tag else stamp
        n = 1
        while (self.versions / name).exists():
            n += 1
            name = f"{stamp}-{tag}-{n}" if tag else f"{stamp}-{n}"
        return name

    @contextmanager
    def new_version(self, tag: str = "", based_on: Path | None = None) -> Iterator[tuple[Path, Path]]:
        """Yield (a folder to fill, where it will live); on success it appears whole as ``versions/<name>``.

        On error the folder is removed. ``based_on``: start from a copy of that version (to recalibrate it: the
        original is never edited).
        """
        target = self.versions / self.new_version_name(tag)
        with atomic_folder(target) as tmp:
            if based_on is not None:
                for part in ("encoder", "adapter"):
                    if (based_on / part).is_dir():
                        shutil.copytree(based_on / part, tmp / part)
            yield tmp, target

    def promote(self, version: Path, record: dict[str, Any]) -> None:
        """Serve ``version`` and append ``record`` to the history, under the lock; then prune old versions."""
        check_pair(version)
        with self.locked():
            previous = self.link.resolve() if self.link.is_symlink() else None
            self._switch(version)
            history = self.history()
            history.append({**record, "version": str(version), "previous": str(previous) if previous else None})
            atomic_write_text(self.history_file, json.dumps(history, indent=2) + "\n")
            self._prune(keep_also={version})

    def rollback(self) -> Path:
        """Serve the version that was served before the last promotion; drop that promotion from the history."""
        with self.locked():
            history = self.history()
            if not history or not history[-1].get("previous"):
                raise DataError(f"{self.history_file}: no earlier version to roll back to")
            previous = Path(history[-1]["previous"])
            if not (previous / "encoder").is_dir():
                raise DataError(f"previous version {previous} is gone; nothing to roll back to")
            self._switch(previous)
            atomic_write_text(self.history_file, json.dumps(history[:-1], indent=2) + "\n")
            return previous

    def history(self) -> list[dict[str, Any]]:
        if not self.history_file.exists():
            return []
        try:
            data = json.loads(self.history_file.read_text())
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{self.history_file} is not valid JSON ({exc}); restore it from a backup") from exc
        if not isinstance(data, list):
            raise CheckpointError(f"{self.history_file} must hold a JSON list of promotions")
        return data

    def _switch(self, target: Path) -> None:
        """Point the link at ``target`` atomically: a new symlink renamed over the old one, then fsync the folder."""
        tmp = self.link.with_name(f".{self.link.name}.switch-{os.getpid()}")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.relpath(target, self.link.parent), tmp)
        os.replace(tmp, self.link)
        fsync_dir(self.link.parent)

    def _prune(self, keep_also: set[Path]) -> None:
        """Keep the newest ``keep`` versions, the served one and ``keep_also``; remove the rest (caller holds the
        lock). Folders left half-written by a killed job (``.<name>.tmp-*``) go too."""
        if not self.versions.is_dir():
            return
        served = self.link.resolve() if self.link.is_symlink() else None
        for stale in self.versions.glob(".*.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        folders = sorted((p for p in self.versions.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_age)
        protected = {p.resolve() for p in keep_also} | ({served} if served else set())
        for old in folders[: max(0, len(folders) - self.keep)]:
            if old.resolve() not in protected:
                shutil.rmtree(old, ignore_errors=True)
                logger.info("pruned version %s (keeping the newest %d and the served one)", old.name, self.keep)


def _age(path: Path) -> tuple[float, str]:
    return path.stat().st_mtime, path.name


def check_pair(version: Path) -> None:
    """An encoder and its adapter must speak the same labels and prompt; raise ``CheckpointError`` naming both."""
    check_adapter_matches(version / "encoder", version / "adapter")


def check_adapter_matches(encoder: Path, adapter: Path) -> None:
    """Raise ``CheckpointError`` when ``adapter`` exists and answers with other labels than ``encoder``."""
    enc = read_manifest(encoder, kind="encoder")
    if not (adapter / "triage_manifest.json").exists():
        return
    ada = read_manifest(adapter, kind="adapter")
    prompt = ada.extra.get("prompt_version")
    if prompt is not None and str(prompt) != PROMPT_VERSION:
        raise CheckpointError(
            f"adapter {adapter} was trained on prompt version {prompt}, this triage builds prompt version "
            f"{PROMPT_VERSION}; retrain the adapter (triage retrain --with-adapter)"
        )
    if enc.labels() != ada.labels():
        raise CheckpointError(
            f"encoder {encoder} and adapter {adapter} are not a pair: the encoder labels are "
            f"[{', '.join(enc.labels())}] but the adapter labels are [{', '.join(ada.labels())}]; "
            "train the adapter on the encoder's taxonomy or serve them apart"
        )


T = TypeVar("T")


def in_new_version(encoder: str | Path, tag: str, change: Callable[[Path], T]) -> tuple[T, Path]:
    """Apply ``change`` to an encoder checkpoint without editing a version in place.

    A plain ``default/`` folder (as ``build-default`` leaves it) is first adopted as a version. Inside a store,
    ``change`` runs on the encoder of a new version copied from the one holding ``encoder``; the
    new version is promoted when the old one was being served (so a rollback really goes back). A standalone
    checkpoint folder is changed where it is (its manifest writes are atomic). Returns ``change``'s result and the
    encoder folder it changed.
    """
    for folder in (Path(encoder), Path(encoder).parent):  # a plain `default/` from build-default: adopt it first
        if folder.name == "default" and (folder / "encoder").is_dir() and not folder.is_symlink():
            VersionStore(folder.parent, folder.name).served()
            break
    found = VersionStore.containing(encoder)
    if found is None:
        return change(Path(encoder)), Path(encoder)
    store, version = found
    served = store.link.resolve() if store.link.is_symlink() else None
    with store.new_version(tag, based_on=version) as (building, target):
        result = change(building / "encoder")
    if served == version.resolve():
        store.promote(target, {"by": tag, "from": str(version)})
    return result, target / "encoder"
