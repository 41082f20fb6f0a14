"""User-facing errors.

Anything raised as a :class:`MedgoError` is a problem with the user's input or environment
(missing file, bad config, malformed record). The CLI prints it as one line and exits 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MedgoError(Exception):
    """An error the user can fix; printed without a traceback."""


class ConfigError(MedgoError):
    """A configuration file or override is invalid."""


class InputError(MedgoError):
    """An input file is missing, unreadable or malformed.

    ``source``/``line``/``field`` locate the problem so the message names it.
    """

    def __init__(
        self, message: str, *, source: str | None = None, line: int | None = None, field: str | None = None
    ) -> None:
        where = ""
        if source:
            where = source + (f":{line}" if line is not None else "")
        if field:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)
        self.source, self.line, self.field = source, line, field


class InvalidSpec(MedgoError, ValueError):
    """A Kubernetes object cannot be built from the given parameters; the message names the parameter.

    Raised before anything reaches the cluster, so a bad pipeline parameter fails in the step that
    set it instead of as a 422 from the API server minutes later.
    """
