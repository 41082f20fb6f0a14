"""Bearer tokens for the feedback routes, by role, from a mounted Kubernetes Secret.

The Secret ``medgo-feedback-tokens`` (created by the site's operator, never committed) is mounted as
a directory with one file per role, each holding one or more tokens, one per line (several allow a
rotation without downtime):

* ``read``   -- look up feedback entries (no patient text is returned);
* ``write``  -- submit feedback (doctors' apps); also reads;
* ``record`` -- model-server replicas recording served answers in the ``medgo-feedback`` service;
* ``export`` -- the pipeline's export step.

Files are re-read when they change, so a rotated Secret takes effect without a restart. Tokens are
compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import logging
import threading
from pathlib import Path
from typing import Literal

from medgo.errors import ConfigError
from medgo.logs import fields

log = logging.getLogger(__name__)

Role = Literal["read", "write", "record", "export"]
ROLES: tuple[Role, ...] = ("read", "write", "record", "export")
#: A role a token also holds because of its own role.
_IMPLIED: dict[Role, frozenset[Role]] = {"write": frozenset({"read"})}


class TokenSet:
    """The tokens of each role, read from ``directory`` (files named after the roles; missing = none)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"feedback tokens directory {self.directory} does not exist")
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._tokens: dict[Role, tuple[bytes, ...]] = {}
        self._reload()
        if not any(self._tokens.values()):
            raise ConfigError(
                f"feedback tokens directory {self.directory} holds no tokens (files: {', '.join(ROLES)})"
            )

    @classmethod
    def from_tokens(cls, directory: str | Path, tokens: dict[Role, list[str]]) -> TokenSet:
        """Write ``tokens`` as a Secret mount would, then read them (tests, local runs)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for role, values in tokens.items():
            (directory / role).write_text("\n".join(values) + "\n", encoding="utf-8")
        return cls(directory)

    def _files_stamp(self) -> tuple:
        stamp = []
        for role in ROLES:
            path = self.directory / role
            try:
                st = path.stat()
                stamp.append((role, st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                stamp.append((role, None))
        return tuple(stamp)

    def _reload(self) -> None:
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return
        tokens: dict[Role, tuple[bytes, ...]] = {}
        for role in ROLES:
            path = self.directory / role
            lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
            tokens[role] = tuple(line.strip().encode() for line in lines if line.strip())
        self._tokens, self._stamp = tokens, stamp
        log.info(
            "feedback tokens loaded", extra=fields(**{role: len(values) for role, values in tokens.items()})
        )

    def roles(self, token: str | None) -> frozenset[Role]:
        """The roles ``token`` holds (empty for an unknown or missing token)."""
        if not token:
            return frozenset()
        with self._lock:
            self._reload()
            candidate = token.encode()
            held: set[Role] = set()
            for role, values in self._tokens.items():
                # Compare against every token so the time taken does not tell which one matched.
                if any([hmac.compare_digest(candidate, value) for value in values]):
                    held.add(role)
                    held.update(_IMPLIED.get(role, ()))
        return frozenset(held)

    def token(self, role: Role) -> str | None:
        """One token of ``role`` (the first), for a client that authenticates as it."""
        with self._lock:
            self._reload()
            values = self._tokens.get(role) or ()
        return values[0].decode() if values else None


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
