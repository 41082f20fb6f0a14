"""Build medgo's container images hermetically: a local Debian base, a host-built wheelhouse, podman or docker.

``make images`` runs ``python images/build.py all`` from the repository root:

1. ``base``: ``debootstrap --variant=minbase bookworm`` (Debian 12, python3 3.11) from the Debian mirror this
   machine's apt uses, imported as ``localhost/medgo/debian-python:bookworm``. It stands in for the upstream
   ``python:3.11-slim-bookworm`` where no registry is reachable. The root tarball is cached.
2. ``wheelhouse``: wheels of medgo's runtime dependencies, resolved with ``requirements/lock-cpu.txt`` as
   constraints (every wheel must be a locked version; cached per lock) in ``images/wheelhouse/deps``, and
   the medgo wheel of this tree in ``images/wheelhouse/medgo``. The Dockerfiles' build stages install from
   there with ``pip install --no-index`` when built with ``PIP_OFFLINE=1``.
3. ``images``: runtime, serving and the trainer's CPU variant, tagged ``<registry>/<name>:<version>``
   (``-cpu`` for the trainer variant); the image IDs, digests and sizes go to ``build/images/images.json``.

The image names and the version tag are defined here (``REGISTRY``, ``IMAGES``, :func:`version`) and nowhere
else in the build; ``tests/images`` checks that the pipeline and the manifests name the same images.
Caches live under ``$MEDGO_IMAGE_CACHE`` (default ``~/.cache/medgo/images``). Standard library only; the
wheelhouse step runs pip (and setuptools, for the medgo wheel) of the Python that runs this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock-cpu.txt"
WHEELHOUSE = REPO / "images" / "wheelhouse"
RECORD = REPO / "build" / "images" / "images.json"
CONTAINERS_CONF = REPO / "images" / "containers.conf"

#: Where the pipeline, the manifests and `make images` find medgo's images.
REGISTRY = "ghcr.io/medgo"

#: Label holding :func:`build_inputs`; an image whose label matches is not built again.
INPUTS_LABEL = "io.medgo.build-inputs"
#: The local stand-in for the runtime/serving/trainer-cpu base (``python:3.11.*-slim-bookworm``).
LOCAL_BASE = "localhost/medgo/debian-python:bookworm"
DEBIAN_SUITE = "bookworm"
#: What the base adds to minbase: the interpreter the images run on, and TLS roots for S3 over https.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
#: Bumped when the base recipe below changes, so a cached tarball is not reused.
BASE_RECIPE = "3"
#: Like Debian's slim images: no docs, man pages or translations in the base or anything apt adds later.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


@dataclass(frozen=True)
class ImageSpec:
    """One image ``make images`` builds."""

    name: str
    repository: str
    dockerfile: str
    tag_suffix: str = ""
    #: Build arguments; ``{base}``, ``{runtime}`` (the runtime image's reference) and ``{version}`` are
    #: filled in at build time.
    build_args: dict[str, str] = field(default_factory=dict)
    #: ``none``: the build needs no network at all (everything comes from the wheelhouse and the base).
    network: str = "none"

    def ref(self, ver: str) -> str:
        return f"{self.repository}:{ver}{self.tag_suffix}"


#: Python packages from the wheelhouse only (images/pip-install.sh), medgo at this version.
_HERMETIC = {"PIP_OFFLINE": "1", "MEDGO_VERSION": "{version}"}

IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        "runtime",
        f"{REGISTRY}/medgo-runtime",
        "images/runtime/Dockerfile",
        build_args={"BASE_IMAGE": "{base}", **_HERMETIC},
    ),
    ImageSpec(
        "serving",
        f"{REGISTRY}/medgo-serving",
        "images/serving/Dockerfile",
        build_args={"RUNTIME_IMAGE": "{runtime}"},
    ),
    # The CUDA trainer cannot be built here (no CUDA base, no GPU); its CPU variant comes from the same
    # Dockerfile: Debian base, CPU torch from the wheelhouse, no flash-attn. apt needs the Debian mirror.
    ImageSpec(
        "trainer-cpu",
        f"{REGISTRY}/medgo-trainer",
        "images/trainer/Dockerfile",
        tag_suffix="-cpu",
        build_args={
            "BASE_IMAGE": "{base}",
            **_HERMETIC,
            "MEDGO_EXTRAS": "",
            "TORCH_INDEX_URL": "",
            "TORCH_CUDA_ARCH_LIST": "",
        },
        network="default",
    ),
)


def image_ref(name: str) -> str:
    """The reference `make images` tags image ``name`` (``runtime``, ``serving``, ``trainer-cpu``) with."""
    for spec in IMAGES:
        if spec.name == name:
            return spec.ref(version())
    raise KeyError(f"no image {name!r}; known: {[s.name for s in IMAGES]}")


class BuildError(RuntimeError):
    """A step of the image build failed; the message says which and why."""


def version() -> str:
    """The release version: pyproject's ``project.version`` (equal to ``medgo.__version__``, tested)."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path = LOCK) -> dict[str, str]:
    """``{canonical name: version}`` from a ``name==version`` constraints file."""
    pins = {}
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            raise BuildError(f"{lock}:{number}: expected 'name==version', got {line!r}")
        pins[canonical(match[1])] = match[2]
    return pins


# ------------------------------------------------------------------------------------------ Dockerfiles
@dataclass
class Stage:
    """One ``FROM`` stage of a Dockerfile: its base expression and its instructions in order."""

    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [value for key, value in self.instructions if key == keyword]
        return values[-1] if values else None


@dataclass
class Dockerfile:
    global_args: dict[str, str | None]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def declared_args(self) -> set[str]:
        names = set(self.global_args)
        for stage in self.stages:
            names |= {_arg_name(value) for key, value in stage.instructions if key == "ARG"}
        return names


def _arg_name(value: str) -> str:
    return value.split("=", 1)[0].strip()


def parse_dockerfile(path: Path) -> Dockerfile:
    """The instructions of a Dockerfile (comments dropped, continuation lines joined, keywords upper-case)."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    if pending:
        logical.append(pending)
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "FROM":
            parts = value.split()
            parts = [p for p in parts if not p.startswith("--")]
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], alias))
        elif not stages:
            if keyword != "ARG":
                raise BuildError(f"{path}: only ARG may come before the first FROM, got {keyword}")
            name, eq, default = value.partition("=")
            global_args[name.strip()] = default.strip().strip('"') if eq else None
        else:
            stages[-1].instructions.append((keyword, value))
    if not stages:
        raise BuildError(f"{path}: no FROM instruction")
    return Dockerfile(global_args, stages)


def exec_form(value: str | None) -> list[str] | None:
    """``ENTRYPOINT``/``CMD`` in exec (JSON) form as a list; ``None`` when absent."""
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        raise BuildError(f"not in exec (JSON) form: {value!r}") from None
    return parsed


# -------------------------------------------------------------------------------------------- helpers
def cache_dir() -> Path:
    path = Path(os.environ.get("MEDGO_IMAGE_CACHE", Path.home() / ".cache" / "medgo" / "images"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def engine() -> str:
    """The container engine: ``$CONTAINER_ENGINE``, else podman, else a docker whose daemon answers."""
    chosen = os.environ.get("CONTAINER_ENGINE")
    if chosen:
        if not shutil.which(chosen):
            raise BuildError(f"CONTAINER_ENGINE={chosen} is not on PATH")
        return chosen
    if shutil.which("podman"):
        return "podman"
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    raise BuildError("neither podman nor a running docker daemon found; on Debian run images/setup.sh")


def engine_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def run(cmd: list[str], *, what: str, **kwargs) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, env=kwargs.pop("env", engine_env()), **kwargs)
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}): {' '.join(cmd[:4])} …")
    return result


def image_exists(ref: str) -> bool:
    cmd = [engine(), "image", "inspect", ref]
    return subprocess.run(cmd, capture_output=True, env=engine_env()).returncode == 0


def inspect(ref: str) -> dict:
    out = subprocess.run(
        [engine(), "image", "inspect", ref], capture_output=True, text=True, env=engine_env(), check=True
    ).stdout
    return json.loads(out)[0]


def labels(info: dict) -> dict[str, str]:
    """An image's labels from ``image inspect`` output (podman puts them at the top, docker under Config)."""
    return info.get("Labels") or (info.get("Config") or {}).get("Labels") or {}


def sha256_of(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ base
def debian_mirror(suite: str = DEBIAN_SUITE) -> tuple[str, str]:
    """This machine's Debian mirror for ``suite`` and the apt source file that names it.

    Reads deb822 ``/etc/apt/sources.list.d/*.sources`` and one-line ``sources.list`` files; the file is
    copied into the base so that ``apt-get`` in image builds uses the same mirror (and security archive).
    """
    apt = Path(os.environ.get("MEDGO_APT_DIR", "/etc/apt"))
    candidates = sorted((apt / "sources.list.d").glob("*.sources")) + [apt / "sources.list"]
    for path in candidates:
        if not path.is_file():
            continue
        text = path.read_text()
        for block in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", block, flags=re.M))
            if fields.get("Types", "").split()[:1] == ["deb"] and suite in fields.get("Suites", "").split():
                return fields["URIs"].split()[0], text
        for line in text.splitlines():
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()
            uris = [i for i, word in enumerate(words) if "://" in word]
            if words[:1] == ["deb"] and uris and words[uris[0] + 1 : uris[0] + 2] == [suite]:
                return words[uris[0]], text
    raise BuildError(f"no Debian '{suite}' source in {apt}/sources.list(.d); set MEDGO_APT_DIR")


def _slim(root: Path) -> None:
    """Remove what DPKG_EXCLUDES keeps out of later installs, apt's caches and lists, logs, device nodes."""
    for doc in (root / "usr/share/doc").iterdir():
        for path in doc.iterdir() if doc.is_dir() and not doc.is_symlink() else []:
            if path.name != "copyright":
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for pattern in (
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/lintian/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/lib/apt/lists/*",
        "var/log/*.log",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
    ):
        for path in root.glob(pattern):
            if path.name in ("lock", "partial", "auxfiles"):
                continue
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    # Device nodes belong to the runtime (it mounts /dev); upstream images ship an empty /dev.
    for path in (root / "dev").iterdir():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for path in (root / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def build_base(*, force: bool = False) -> str:
    """Make sure the local base image exists (debootstrap → tar → import); return its reference."""
    mirror, sources = debian_mirror()
    key = sha256_of(
        BASE_RECIPE.encode(),
        mirror.encode(),
        sources.encode(),
        " ".join(BASE_PACKAGES).encode(),
        DPKG_EXCLUDES.encode(),
    )[:16]
    tarball = cache_dir() / f"debian-{DEBIAN_SUITE}-python-{key}.tar"
    label = f"io.medgo.base-key={key}"
    if not force and image_exists(LOCAL_BASE) and labels(inspect(LOCAL_BASE)).get("io.medgo.base-key") == key:
        print(f"base {LOCAL_BASE} up to date ({key})")
        return LOCAL_BASE
    if force or not tarball.exists():
        if not shutil.which("debootstrap"):
            raise BuildError("debootstrap not found; run images/setup.sh")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="medgo-base-", dir=cache_dir()) as tmp:
            root = Path(tmp) / "root"
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    DEBIAN_SUITE,
                    str(root),
                    mirror,
                ],
                what="debootstrap",
                stdout=subprocess.DEVNULL,
            )
            (root / "etc/dpkg/dpkg.cfg.d/01-medgo-slim").write_text(DPKG_EXCLUDES)
            _slim(root)
            (root / "etc/apt/sources.list").unlink(missing_ok=True)
            (root / "etc/apt/sources.list.d").mkdir(exist_ok=True)
            (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)
            # An empty machine-id, as upstream images have; systemd would fill it on a real boot.
            (root / "etc/machine-id").write_text("")
            partial = tarball.with_suffix(".partial")
            run(
                ["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
                what="tar of the base root",
            )
            partial.replace(tarball)
        print(f"debootstrap base built in {time.monotonic() - started:.0f}s")
    changes = [
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["python3"]',
        f"LABEL {label}",
        f"LABEL org.opencontainers.image.description=debootstrap {DEBIAN_SUITE} minbase + "
        f"{' '.join(BASE_PACKAGES)} from {mirror}",
    ]
    cmd = [engine(), "import"]
    for change in changes:
        cmd += ["--change", change]
    run([*cmd, str(tarball), LOCAL_BASE], what="import of the base", stdout=subprocess.DEVNULL)
    return LOCAL_BASE


# ------------------------------------------------------------------------------------------ wheelhouse
def _runtime_requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]


def check_wheelhouse(wheels: Path, lock: Path = LOCK) -> list[str]:
    """Every wheel in ``wheels`` must be a version the lock pins; returns their names.

    Catches a dependency that the lock does not cover, and a CUDA torch whose nvidia-* libraries a CPU
    wheelhouse must not contain.
    """
    pins = locked_versions(lock)
    names, problems = [], []
    for wheel in sorted(wheels.glob("*.whl")):
        name, ver = wheel.name.split("-")[:2]
        name = canonical(name)
        names.append(name)
        if name.startswith("nvidia-") or name == "triton":
            problems.append(
                f"{wheel.name}: a CUDA library in the CPU wheelhouse (set TORCH_INDEX_URL to the CPU "
                "wheel index, e.g. https://download.pytorch.org/whl/cpu)"
            )
        elif name not in pins:
            problems.append(f"{wheel.name}: {name} is not pinned in {lock.name}")
        elif ver.split("+", 1)[0] != pins[name]:
            problems.append(f"{wheel.name}: {lock.name} pins {name}=={pins[name]}")
    if problems:
        raise BuildError("wheelhouse does not match the lock:\n  " + "\n  ".join(problems))
    return names


def build_wheelhouse(*, torch_index_url: str = "", force: bool = False) -> Path:
    """Fill ``images/wheelhouse/deps`` with the locked third-party wheels (cached per lock) and
    ``images/wheelhouse/medgo`` with a fresh medgo wheel of this tree."""
    key = sha256_of(
        LOCK.read_bytes(),
        "\n".join(_runtime_requirements()).encode(),
        torch_index_url.encode(),
        f"cp{sys.version_info.major}{sys.version_info.minor}".encode(),
    )[:16]
    cached = cache_dir() / f"wheelhouse-{key}"
    if force or not (cached / ".complete").exists():
        started = time.monotonic()
        shutil.rmtree(cached, ignore_errors=True)
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        torch_pin = next(r for r in _runtime_requirements() if canonical(r.split("=")[0]) == "torch")
        # torch alone first, from the CPU index when given: the default Linux wheel pulls CUDA libraries.
        run(
            _pip(
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--dest",
                str(partial),
                *(["--index-url", torch_index_url] if torch_index_url else []),
                torch_pin,
            ),
            what="download of torch",
            env=dict(os.environ),
        )
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as reqs:
            reqs.write("\n".join(_runtime_requirements()) + "\n")
        try:
            run(
                _pip(
                    "wheel",
                    "--wheel-dir",
                    str(partial),
                    "--find-links",
                    str(partial),
                    "--constraint",
                    str(LOCK),
                    "--requirement",
                    reqs.name,
                ),
                what="pip wheel of the locked dependencies",
                env=dict(os.environ),
            )
        finally:
            os.unlink(reqs.name)
        check_wheelhouse(partial)
        (partial / ".complete").write_text(
            json.dumps(
                {
                    "lock_sha256": hashlib.sha256(LOCK.read_bytes()).hexdigest(),
                    "torch_index_url": torch_index_url,
                }
            )
        )
        partial.rename(cached)
        print(f"wheelhouse built in {time.monotonic() - started:.0f}s: {cached}")

    deps, medgo = WHEELHOUSE / "deps", WHEELHOUSE / "medgo"
    for directory in (deps, medgo):
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.whl"):
            old.unlink()
    for wheel in cached.glob("*.whl"):
        try:
            os.link(wheel, deps / wheel.name)
        except OSError:
            shutil.copy2(wheel, deps / wheel.name)
    _build_medgo_wheel(medgo)
    names = check_wheelhouse(deps)
    print(
        f"wheelhouse: {len(names)} locked wheels in {deps.relative_to(REPO)}, "
        f"{next(medgo.glob('*.whl')).name} in {medgo.relative_to(REPO)}"
    )
    return WHEELHOUSE


def _build_medgo_wheel(dest: Path) -> None:
    """The medgo wheel of this working tree, built from a copy so the tree gets no build/ or egg-info."""
    with tempfile.TemporaryDirectory(prefix="medgo-wheel-") as tmp:
        src = Path(tmp) / "medgo"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, src / name)
        shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        # The host venv's setuptools builds it; nothing is fetched. Fixed zip timestamps: the same tree gives
        # the same wheel, so the image layers above it stay cached.
        run(
            _pip(
                "wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir", str(dest), str(src)
            ),
            what="build of the medgo wheel",
            env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
            stdout=subprocess.DEVNULL,
        )


# -------------------------------------------------------------------------------------------- images
def _git_revision() -> str:
    result = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


#: Context files the builds never see (.dockerignore keeps them out too).
_NOT_IN_CONTEXT = ("__pycache__", ".egg-info", ".pyc")


def build_inputs(
    dockerfile_path: Path, dockerfile: Dockerfile, args: dict[str, str], base_ids: list[str]
) -> str:
    """sha256 of everything a build depends on: the Dockerfile, the resolved build arguments, the base
    images' IDs and every context file its COPY instructions read (path, mode, content)."""
    digest = hashlib.sha256(dockerfile_path.read_bytes())
    digest.update(json.dumps([sorted(args.items()), base_ids]).encode())
    sources = sorted(
        {
            value.split()[0]
            for stage in dockerfile.stages
            for key, value in stage.instructions
            if key == "COPY" and not value.startswith("--")
        }
    )
    for source in sources:
        root = REPO / source
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            rel = path.relative_to(REPO).as_posix()
            if path.is_file() and not any(part in rel for part in _NOT_IN_CONTEXT):
                digest.update(f"{rel}\0{path.stat().st_mode & 0o777}\0".encode())
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_images(names: list[str] | None = None, *, base: str = LOCAL_BASE) -> dict:
    """Build the images (all, or ``names`` in order), record them in ``build/images/images.json``."""
    ver = version()
    specs = [s for s in IMAGES if names is None or s.name in names]
    unknown = set(names or []) - {s.name for s in IMAGES}
    if unknown:
        raise BuildError(f"unknown image(s) {sorted(unknown)}; known: {[s.name for s in IMAGES]}")
    record = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    record = {k: v for k, v in record.get("images", {}).items() if k in {s.name for s in IMAGES}}
    tool = engine()
    runtime_ref = image_ref("runtime")
    for spec in specs:
        ref = spec.ref(ver)
        dockerfile = parse_dockerfile(REPO / spec.dockerfile)
        args = {k: v.format(base=base, runtime=runtime_ref, version=ver) for k, v in spec.build_args.items()}
        undeclared = set(args) - dockerfile.declared_args()
        if undeclared:
            raise BuildError(
                f"{spec.dockerfile} declares no ARG {sorted(undeclared)}; the build would ignore them"
            )
        base_ids = [inspect(b)["Id"] for b in (args.get("BASE_IMAGE"), args.get("RUNTIME_IMAGE")) if b]
        inputs = build_inputs(REPO / spec.dockerfile, dockerfile, args, base_ids)
        if image_exists(ref) and labels(inspect(ref)).get(INPUTS_LABEL) == inputs:
            print(f"{ref} is up to date (same Dockerfile, arguments, bases and context files)")
            record[spec.name] = {**_record_entry(ref, spec, args, 0.0), "cached": True}
            continue
        cmd = [tool, "build", "--file", spec.dockerfile, "--tag", ref]
        if tool == "podman":
            cmd += ["--pull=never", "--layers"]
        if spec.network == "none":
            cmd += ["--network=none"]
        for key, value in args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        for key, value in {
            "org.opencontainers.image.version": ver,
            "org.opencontainers.image.revision": _git_revision(),
            "org.opencontainers.image.title": spec.repository.rsplit("/", 1)[-1],
            INPUTS_LABEL: inputs,
        }.items():
            cmd += ["--label", f"{key}={value}"]
        started = time.monotonic()
        run([*cmd, "."], what=f"build of {spec.name}", cwd=REPO)
        seconds = time.monotonic() - started
        record[spec.name] = _record_entry(ref, spec, args, seconds)
        print(f"built {ref} in {seconds:.0f}s: {record[spec.name]['size_bytes'] / 1e6:.0f} MB")
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    out = {"version": ver, "engine": tool, "revision": _git_revision(), "images": record}
    RECORD.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _record_entry(ref: str, spec: ImageSpec, args: dict[str, str], seconds: float) -> dict:
    info = inspect(ref)
    return {
        "ref": ref,
        "id": info["Id"] if info["Id"].startswith("sha256:") else f"sha256:{info['Id']}",
        "digest": info.get("Digest") or None,
        "size_bytes": info.get("Size"),
        "dockerfile": spec.dockerfile,
        "base": args.get("BASE_IMAGE") or args.get("RUNTIME_IMAGE"),
        "build_seconds": round(seconds, 1),
    }


def print_sizes(record: dict) -> None:
    print(f"  {'image':12s} {'reference':45s} {'size':>10s}  {'build':>8s}  id")
    for name, image in record["images"].items():
        took = "cached" if image.get("cached") else f"{image['build_seconds']:.1f} s"
        print(
            f"  {name:12s} {image['ref']:45s} {image['size_bytes'] / 1e6:7.0f} MB  {took:>8s}  {image['id'][:19]}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python images/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "step",
        choices=["base", "wheelhouse", "images", "all", "tags", "sizes"],
        help="base: local Debian base; wheelhouse: locked wheels + medgo; images: build them; "
        "all: the three in order; tags: print the image references; sizes: print the "
        "built images' sizes and build times",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help=f"build only these images (repeatable): {', '.join(s.name for s in IMAGES)}",
    )
    parser.add_argument("--base", default=LOCAL_BASE, help="base image for runtime and trainer-cpu")
    parser.add_argument(
        "--torch-index-url",
        default=os.environ.get("TORCH_INDEX_URL", ""),
        help="index serving the CPU torch wheel (default: pip's configured index; $TORCH_INDEX_URL)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild the cached base/wheelhouse")
    args = parser.parse_args(argv)
    try:
        if args.step == "tags":
            for spec in IMAGES:
                print(spec.name, spec.ref(version()))
            return 0
        if args.step == "sizes":
            if not RECORD.exists():
                raise BuildError(f"{RECORD.relative_to(REPO)} is missing: run `make images` first")
            print_sizes(json.loads(RECORD.read_text()))
            return 0
        if args.step in ("base", "all") and args.base == LOCAL_BASE:
            build_base(force=args.force)
        if args.step in ("wheelhouse", "all"):
            build_wheelhouse(torch_index_url=args.torch_index_url, force=args.force)
        if args.step in ("images", "all"):
            print_sizes(build_images(args.only, base=args.base))
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
