"""Fixtures for the container smoke tests: the images `make images` built, and a way to run them.

The smoke tests run only under ``make images-test`` (``MEDGO_IMAGES_TEST=1``); there, a missing engine or
missing images is an error. Everywhere else (``make test`` on a laptop) they skip with one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from images import build

REQUESTED = os.environ.get("MEDGO_IMAGES_TEST") == "1"
SKIP_REASON = "container smoke tests run with `make images images-test` (podman; see images/README.md)"


@dataclass(frozen=True)
class Engine:
    """podman (or docker) with the repository's containers.conf."""

    command: str

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True, **kwargs
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.command, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=build.engine_env(),
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{self.command} {' '.join(args[:3])} … exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result


def _unavailable(reason: str) -> None:
    if REQUESTED:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine() -> Engine:
    if not REQUESTED:
        pytest.skip(SKIP_REASON)
    try:
        return Engine(build.engine())
    except build.BuildError as exc:
        _unavailable(str(exc))


@pytest.fixture(scope="session")
def built(engine) -> dict[str, str]:
    """``{image name: image ID}`` from build/images/images.json, each checked to exist and to carry its tag."""
    if not build.RECORD.exists():
        _unavailable(f"{build.RECORD.relative_to(build.REPO)} is missing: run `make images` first")
    record = json.loads(build.RECORD.read_text())["images"]
    ids = {}
    for image in build.IMAGES:
        entry = record.get(image.name)
        if entry is None or engine("image", "inspect", entry["id"], check=False).returncode != 0:
            _unavailable(f"image {image.name} was not built: run `make images` first")
        tagged = json.loads(engine("image", "inspect", build.image_ref(image.name)).stdout)[0]["Id"]
        assert entry["id"].removeprefix("sha256:") == tagged.removeprefix("sha256:"), (
            f"{build.image_ref(image.name)} no longer is the image `make images` recorded; rebuild"
        )
        ids[image.name] = entry["id"]
    return ids


@pytest.fixture
def uid1000_dir(tmp_path_factory):
    """A fresh host directory owned by UID/GID 1000, as a volume written by medgo's pods would be."""

    def make(name: str) -> Path:
        path = tmp_path_factory.mktemp(name)
        path.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(path, 1000, 1000)
        else:
            path.chmod(0o777)
        return path

    return make


def chown_tree(path: Path, uid: int = 1000, gid: int = 1000) -> None:
    """Give a host tree to the pods' user, as files on a PVC or from KServe's storage initializer would be."""
    if os.geteuid() != 0:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o777 if p.is_dir() else 0o666)
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, uid, gid, follow_symlinks=False)
