"""The image's install and start steps (docker/triage-image.sh, which the Dockerfile runs) in a fresh venv: start
as a non-root user on a read-only checkpoint, ending with /ready 200. No Docker daemon here, so the script is the
part of the image that can run; hadolint checks the Dockerfile in `make lint`."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "docker" / "triage-image.sh"


def _cmdline(pid: Path) -> bytes:
    try:
        return (pid / "cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = 0o555 if path.is_dir() else 0o444
        path.chmod(mode)


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A folder another user can traverse (pytest's tmp_path is 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="triage-image-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow  # installs the project into a fresh venv from the package index (the network), ≈ 80 s
def test_install_then_start_as_non_root_on_a_read_only_checkpoint(encoder_dir: Path, world_readable_tmp: Path) -> None:
    root = world_readable_tmp
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "app", "models", "router"):
        source = REPO / name
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        if source.is_dir():
            shutil.copytree(source, src / name, ignore=ignore)
        else:
            shutil.copy2(source, src / name)
    venv = root / "venv"
    # the image's python is the system one; a python under /root (pyenv) is not runnable by another user
    python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or "python3"
    env = {**os.environ, "TRIAGE_VENV": str(venv), "TRIAGE_SRC": str(src), "TORCH": "torch==2.13.0", "PYTHON": python}
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run(["bash", str(SCRIPT), "install"], env=env, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (venv / "bin" / "triage").exists()

    checkpoint = root / "checkpoints" / "default" / "encoder"
    shutil.copytree(encoder_dir, checkpoint)
    _read_only(root / "checkpoints")
    shutil.copy2(SCRIPT, root / "triage-image.sh")
    (root / "triage-image.sh").chmod(0o755)

    port = free_port()
    start_env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
        "TRIAGE_VENV": str(venv),
        "TRIAGE_ENCODER_PATH": str(checkpoint),
        "TRIAGE_LLM_BACKEND": "none",
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    as_user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    command = [*as_user, "env", *(f"{k}={v}" for k, v in start_env.items()), str(root / "triage-image.sh"), "start"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code
            except httpx.TransportError:
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        if status != 200:
            process.terminate()
            raise AssertionError(f"not ready: {process.communicate(timeout=30)[1][-3000:]}")
        served = httpx.post(f"http://127.0.0.1:{port}/classify", json={"text": "the app crashes"}, timeout=30)
        assert served.status_code == 200
        uids = [
            int(line.split()[1])
            for pid in Path("/proc").iterdir()
            if pid.name.isdigit() and f"--port\x00{port}".encode() in _cmdline(pid)
            for line in (pid / "status").read_text().splitlines()
            if line.startswith("Uid:")
        ]
        assert uids and all(uid != 0 for uid in uids)  # the server does not run as root
        assert not stat.S_IMODE(checkpoint.stat().st_mode) & 0o222  # the checkpoint stayed read-only
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_start_without_a_checkpoint_says_what_to_mount(tmp_path: Path) -> None:
    env = {**os.environ, "TRIAGE_ENCODER_PATH": str(tmp_path / "nothing"), "TRIAGE_VENV": str(tmp_path / "venv")}
    result = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no checkpoint at" in result.stderr and "mount a checkpoints folder" in result.stderr
