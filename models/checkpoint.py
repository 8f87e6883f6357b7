"""Checkpoint folders: a ``save_pretrained`` folder plus ``triage_manifest.json`` and a model card.

Checkpoints are written atomically: everything goes into a temporary sibling folder, which is renamed into
place only once complete, so a crash mid-write never leaves a half-written folder where the server looks.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from models.errors import CheckpointError
from models.taxonomy import Taxonomy

MANIFEST_FILE = "triage_manifest.json"
FORMAT_VERSION = 1


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a checkpoint, recorded in its manifest."""
    out = {"python": platform.python_version()}
    for name in ("triage", "torch", "transformers", "tokenizers", "peft", "bitsandbytes"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class Manifest:
    """Everything needed to serve a checkpoint besides the weights and tokenizer."""

    kind: str  # "encoder" or "adapter"
    version: str
    base_model: str
    taxonomy: dict[str, Any]
    thresholds: list[float]
    """Per-label decision thresholds (encoder checkpoints; empty for adapters)."""
    temperatures: list[float]
    """Per-label temperature applied to logits before the sigmoid (1.0 = uncalibrated)."""
    max_length: int
    training_args: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    data_fingerprint: str = ""
    versions: dict[str, str] = field(default_factory=library_versions)
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    biases: list[float] = field(default_factory=list)
    """Per-label bias added after the temperature (``sigmoid(logit / T + b)``); empty means zeros."""

    def labels(self) -> list[str]:
        return Taxonomy.from_dict(self.taxonomy).names

    def router_threshold(self) -> tuple[float | None, str]:
        """The escalation threshold ``triage calibrate-router`` stored here (None if never run), and its source."""
        router = self.extra.get("router", {})
        return router.get("escalation_threshold"), str(router.get("source", ""))

    def router_merge_policy(self) -> tuple[str | None, str]:
        """The per-label merge policy ``triage calibrate-router --arbitrate`` stored here (None if never), and its
        source."""
        router = self.extra.get("router", {})
        return router.get("merge_policy"), str(router.get("merge_policy_source", ""))

    def write(self, folder: Path) -> None:
        """Write the manifest atomically (temp file + rename): a reader sees the old or the new one, never half."""
        atomic_write_text(folder / MANIFEST_FILE, json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n")


FILE_MODE = 0o644
DIR_MODE = 0o755
"""Checkpoints are readable by other users: the server often runs as another user than the trainer (Docker)."""


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write + fsync a temporary sibling, then rename it over ``path`` (mode 0644): old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _make_readable(folder: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(folder):
        os.chmod(dirpath, DIR_MODE)
        for name in filenames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, FILE_MODE)


def read_manifest(folder: str | Path, kind: str | None = None) -> Manifest:
    """Read and check a checkpoint's manifest; errors say what was found and how to make one."""
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not folder.is_dir():
        raise CheckpointError(
            f"checkpoint folder {folder} does not exist; build the default with `triage build-default` "
            "or train one with `triage train-encoder`"
        )
    if not path.exists():
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:8]) or "nothing"
        raise CheckpointError(f"{folder} is not a triage checkpoint: no {MANIFEST_FILE} (found {found})")
    try:
        data = json.loads(path.read_text())
        manifest = Manifest(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path} is malformed: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {manifest.format_version}; this triage reads {FORMAT_VERSION}"
        )
    if kind is not None and manifest.kind != kind:
        raise CheckpointError(f"{folder} holds a {manifest.kind!r} checkpoint, expected {kind!r}")
    n = len(manifest.labels())
    if manifest.kind == "encoder" and (
        len(manifest.thresholds) != n or len(manifest.temperatures) != n or len(manifest.biases) not in (0, n)
    ):
        raise CheckpointError(
            f"{path}: {n} labels but {len(manifest.thresholds)} thresholds, "
            f"{len(manifest.temperatures)} temperatures and {len(manifest.biases)} biases"
        )
    return manifest


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success it replaces ``out``, on error it is deleted.

    The finished folder is made readable by everyone (folders 0755, files 0644) before it appears. The old folder
    is moved aside first and removed only after the new one is in place.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _make_readable(tmp)
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_model_card(folder: Path, manifest: Manifest, title: str) -> None:
    """A short README.md: what the checkpoint is, its data, metrics and versions."""
    metrics = "\n".join(
        f"| {split} | "
        + " | ".join(f"{values.get(k, float('nan')):.3f}" for k in ("f1_micro", "f1_macro", "exact_match"))
        + " |"
        for split, values in manifest.metrics.items()
        if isinstance(values, dict)
    )
    args = "\n".join(f"- `{k}`: {v}" for k, v in sorted(manifest.training_args.items()))
    versions = ", ".join(f"{k} {v}" for k, v in manifest.versions.items())
    labels = ", ".join(manifest.labels())
    card = f"""# {title}

- version: `{manifest.version}`
- base model: `{manifest.base_model}`
- created: {manifest.created_at}
- data fingerprint: `{manifest.data_fingerprint}`
- labels ({len(manifest.labels())}): {labels}
- versions: {versions}

## Metrics

| split | F1 micro | F1 macro | exact match |
|---|---|---|---|
{metrics}

## Training arguments

{args}
"""
    (folder / "README.md").write_text(card)
