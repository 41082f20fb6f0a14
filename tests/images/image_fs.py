"""An image's file system as seen by the content checks: every path with its owner and mode, and a way to
read the files the build wrote; and the scan for credentials, writable paths, compilers and leftover wheels.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from images import build

#: Debian's world-writable, sticky scratch directories; nothing else may be writable by the pods' user.
SCRATCH_DIRS = {"tmp", "var/tmp", "run/lock"}
CREDENTIAL_FILES = re.compile(
    r"(^|/)(\.netrc|_netrc|\.pypirc|\.git-credentials|\.aws/credentials|\.aws/config|"
    r"\.docker/config\.json|\.kube/config|id_rsa|id_ecdsa|id_ed25519|\.npmrc)$"
)
CREDENTIAL_TEXT = [
    re.compile(rb"(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"),  # AWS access key ids
    re.compile(rb"aws_secret_access_key\s*=\s*[A-Za-z0-9/+]{40}"),
    re.compile(rb"-----BEGIN (RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----\s*[A-Za-z0-9+/=]{40}"),
    re.compile(rb"gh[pousr]_[A-Za-z0-9]{36}"),  # GitHub tokens
    re.compile(rb"hf_[A-Za-z]{34}"),  # Hugging Face tokens
    re.compile(rb"(index-url|extra-index-url|find-links)\s*=\s*https?://[^/\s:@]+:[^/\s@]+@"),  # pip creds
]
COMPILERS = (
    "usr/bin/gcc",
    "usr/bin/g++",
    "usr/bin/cc",
    "usr/bin/c++",
    "usr/bin/cpp",
    "usr/bin/make",
    "usr/bin/clang",
    "usr/bin/ld",
    "usr/bin/as",
    "usr/bin/x86_64-linux-gnu-gcc-12",
)


@dataclass(frozen=True)
class Entry:
    path: str  # relative to the image root, no leading slash
    mode: int
    uid: int
    gid: int
    kind: str  # "file", "dir", "link", "other"
    size: int


def image_entries(engine, image_id: str):
    """``(Entry, read)`` for every path of the image's file system, ``read()`` giving a file's bytes.

    Rootful podman mounts the image (fast); otherwise a container that never starts is exported as a tar.
    """
    if engine.command == "podman" and os.geteuid() == 0:
        root = Path(engine("image", "mount", image_id).stdout.strip())
        try:
            for directory, dirs, files in os.walk(root):
                for name in dirs + files:
                    full = Path(directory) / name
                    st = full.lstat()
                    kind = (
                        "link"
                        if stat.S_ISLNK(st.st_mode)
                        else "dir"
                        if stat.S_ISDIR(st.st_mode)
                        else "file"
                        if stat.S_ISREG(st.st_mode)
                        else "other"
                    )
                    entry = Entry(
                        str(full.relative_to(root)),
                        stat.S_IMODE(st.st_mode),
                        st.st_uid,
                        st.st_gid,
                        kind,
                        st.st_size,
                    )
                    yield entry, full.read_bytes
        finally:
            engine("image", "unmount", image_id, check=False)
        return
    container = engine("create", image_id).stdout.strip()
    try:
        with (
            subprocess.Popen(
                [engine.command, "export", container], stdout=subprocess.PIPE, env=build.engine_env()
            ) as export,
            tarfile.open(fileobj=export.stdout, mode="r|") as tar,
        ):
            for member in tar:
                kind = (
                    "link"
                    if member.issym()
                    else "dir"
                    if member.isdir()
                    else "file"
                    if member.isfile()
                    else "other"
                )
                entry = Entry(
                    member.name.removeprefix("./").rstrip("/"),
                    member.mode & 0o7777,
                    member.uid,
                    member.gid,
                    kind,
                    member.size,
                )
                yield entry, (lambda m=member: tar.extractfile(m).read())
    finally:
        engine("rm", container, check=False)


def content_is_ours(path: str) -> bool:
    """Files the build wrote: everything but the pinned third-party packages' own files (their names are
    still checked). Credentials reach an image through the build (config files, env, copied context)."""
    if "/site-packages/" not in path:
        return True
    return path.split("/site-packages/", 1)[1].split("/", 1)[0].startswith(("medgo", "_medgo"))


def scan(entries) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {"credential": [], "writable": [], "compiler": [], "wheel": [], "files": []}
    for entry, read in entries:
        path = entry.path
        found["files"].append(path)
        if CREDENTIAL_FILES.search(path):
            found["credential"].append(path)
        writable = (
            (entry.uid == 1000 and entry.mode & 0o200)
            or (entry.gid == 1000 and entry.mode & 0o020)
            or (entry.mode & 0o002 and entry.kind != "link")
        )
        if writable and not (path in SCRATCH_DIRS and entry.kind == "dir" and entry.mode & 0o1000):
            found["writable"].append(f"{path} ({oct(entry.mode)} {entry.uid}:{entry.gid})")
        if path in COMPILERS:
            found["compiler"].append(path)
        # Debian's python3-venv keeps ensurepip's pip/setuptools wheels in usr/share/python-wheels.
        leftover_wheel = path.endswith(".whl") and not path.startswith("usr/share/python-wheels/")
        if leftover_wheel or path.startswith(("wheels/", "root/.cache/pip", "dist/")):
            found["wheel"].append(path)
        if entry.kind == "file" and entry.size < 4_000_000 and content_is_ours(path):
            text = read()
            if b"\0" in text[:4096]:
                continue
            for pattern in CREDENTIAL_TEXT:
                for match in pattern.finditer(text):
                    found["credential"].append(f"{path}: {match.group(0)[:8]!r}…")
    return found
