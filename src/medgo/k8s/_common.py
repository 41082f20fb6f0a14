"""Checks and helpers shared by the PyTorchJob and InferenceService code.

The checks mirror the API server's own rules (names, quantities, env names) so that a bad parameter
fails in the pipeline step that set it, with a message naming the parameter, instead of as a 422 from
the cluster minutes later.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from medgo.errors import InvalidSpec

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Kubernetes resource.Quantity: a signed decimal number with an optional binary/decimal SI suffix or exponent.
_QUANTITY = re.compile(r"^[+]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def require_dns1123_label(value: str, what: str) -> None:
    """Raise :class:`~medgo.errors.InvalidSpec` unless ``value`` is a DNS-1123 label (namespaces, PVC volume names)."""
    if not isinstance(value, str) or len(value) > 63 or not _DNS1123_LABEL.match(value):
        raise InvalidSpec(
            f"{what} {value!r} must be a DNS-1123 label: at most 63 characters, lowercase letters, "
            "digits and '-', starting and ending with a letter or digit"
        )


def require_dns1035_label(value: str, what: str, *, max_len: int = 63) -> None:
    """Raise :class:`~medgo.errors.InvalidSpec` unless ``value`` is a DNS-1035 label of at most ``max_len`` characters.

    Operators derive Service names from job and model names, and Service names must be DNS-1035 labels
    (first character a letter).
    """
    if not isinstance(value, str) or not _DNS1035_LABEL.match(value) or len(value) > max_len:
        raise InvalidSpec(
            f"{what} {value!r} must be a DNS-1035 label of at most {max_len} characters: lowercase letters, "
            "digits and '-', starting with a letter and ending with a letter or digit"
        )


def require_quantity(value: str, what: str) -> None:
    """Raise :class:`~medgo.errors.InvalidSpec` unless ``value`` is a Kubernetes quantity string such as ``"4"``, ``"500m"``, ``"16Gi"``."""
    if not isinstance(value, str) or not _QUANTITY.match(value):
        raise InvalidSpec(f"{what} {value!r} is not a Kubernetes quantity (examples: '4', '500m', '16Gi')")


def require_pinned_image(image: str) -> None:
    """Raise :class:`~medgo.errors.InvalidSpec` unless ``image`` names a tag other than ``latest`` or a digest.

    A job that pulls ``:latest`` cannot be reproduced; the pipeline passes tag and digest explicitly.
    """
    if not isinstance(image, str) or not image or any(c.isspace() for c in image):
        raise InvalidSpec(f"image {image!r} must be a non-empty image reference without spaces")
    if "@sha256:" in image:
        return
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        raise InvalidSpec(f"image {image!r} has no tag or digest; pin it (e.g. ':0.1.0' or '@sha256:…')")
    if last.rsplit(":", 1)[1] == "latest":
        raise InvalidSpec(f"image {image!r} uses the mutable tag 'latest'; pin a version tag or digest")


def require_env_names(env: Mapping[str, str], reserved: frozenset[str] = frozenset()) -> None:
    """Raise :class:`~medgo.errors.InvalidSpec` for invalid environment variable names, non-string values or reserved names."""
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidSpec(f"environment variable name {name!r} is not a valid C-like identifier")
        if not isinstance(value, str):
            raise InvalidSpec(f"environment variable {name} must be a string, got {type(value).__name__}")
        if name in reserved:
            raise InvalidSpec(
                f"environment variable {name} is set by the operator and must not be overridden"
            )


def require_labels(labels: Mapping[str, str]) -> None:
    """Raise :class:`~medgo.errors.InvalidSpec` unless all label keys and values are strings (the API server rejects anything else)."""
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidSpec(f"label {key!r}={value!r}: label keys and values must be strings")


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 404


def is_conflict(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and exc.status == 409


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying while polling: throttling and server-side failures."""
    return isinstance(exc, ApiException) and (exc.status == 429 or (exc.status or 0) >= 500)


def contains(actual: Any, desired: Any) -> bool:
    """True when every field set in ``desired`` has the same value in ``actual``.

    Operators' defaulting webhooks add fields to what was submitted (restart policies, ports, protocol
    versions); those extra fields do not make a stored object differ from the one we asked for.
    """
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(
            k in actual and contains(actual[k], v) for k, v in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(desired)
            and all(contains(a, d) for a, d in zip(actual, desired, strict=True))
        )
    return actual == desired


def merge_patch_to(current: Any, desired: Any) -> Any:
    """An RFC 7386 JSON merge patch that turns ``current`` into ``desired``.

    Keys present in ``current`` but absent from ``desired`` are set to ``None`` (removed), so the desired
    spec is authoritative: switching ``storageUri`` to ``storageUris`` or dropping ``canaryTrafficPercent``
    really removes the old field. Lists are replaced whole, as merge patch does.
    """
    if not isinstance(current, dict) or not isinstance(desired, dict):
        return desired
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        if key not in current:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(current[key], dict):
            sub = merge_patch_to(current[key], value)
            if sub:
                patch[key] = sub
        elif current[key] != value:
            patch[key] = value
    for key in current:
        if key not in desired:
            patch[key] = None
    return patch


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of ``type_`` in ``obj`` (last one wins), or ``None``."""
    found = None
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            found = cond
    return found


class Poller:
    """Clock and sleep, injectable so that tests of wait loops run instantly."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ):
        self.clock = clock
        self.sleep = sleep


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip


def quantity_bytes(quantity: str) -> float:
    """A Kubernetes quantity (``"16Gi"``, ``"500M"``, ``"1e9"``) as a number."""
    require_quantity(quantity, "quantity")
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(quantity)


def require_node_container(image: str, command: Sequence[str], cpu: str, memory: str, shm_size: str) -> None:
    """What every training node's container needs: a pinned image, a command, sizes that fit together."""
    require_pinned_image(image)
    if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidSpec(f"command must be a non-empty list of strings, got {command!r}")
    for field, value in (("cpu", cpu), ("memory", memory), ("shm_size", shm_size)):
        require_quantity(value, field)
    if quantity_bytes(shm_size) >= quantity_bytes(memory):
        raise InvalidSpec(
            f"shm_size {shm_size} must be below memory {memory}: the memory-backed /dev/shm counts against the "
            "container's memory limit, so the processes would have nothing left (medgo plan sizes both)"
        )
