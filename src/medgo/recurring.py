"""Schedule a compiled pipeline as a KFP recurring run (the feedback round runs nightly).

:func:`recurring_run_arguments` builds the keyword arguments of ``kfp.Client.create_recurring_run``
(one round at a time, no catch-up after a pause, the pipeline's service account, caching off so every
round exports and trains afresh), checking the cron expression and every parameter against the compiled
pipeline first, so a typo fails here and not at 2 a.m. :func:`schedule` sends it to a KFP server.
The ``kfp recurring-run create`` command documented in ``pipelines/feedback_round.py`` does the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from medgo.errors import ConfigError
from medgo.k8s.names import PIPELINE_SERVICE_ACCOUNT

#: Nightly at 02:00, when doctors send little feedback and GPUs are free. KFP's cron has a seconds field.
NIGHTLY = "0 0 2 * * *"
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
#: (name, lowest, highest, names) of the six fields robfig/cron (KFP's scheduler) reads.
_FIELDS = (
    ("second", 0, 59, ()),
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 6, _DAYS),
)
_PARAMETER_TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool}


def _value(text: str, low: int, high: int, names: tuple[str, ...], field: str) -> int:
    if text.upper() in names:
        return names.index(text.upper()) + low
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigError(f"cron {field}: {text!r} is not between {low} and {high}")
    return int(text)


def validate_cron(expression: str) -> str:
    """``expression`` if KFP's scheduler (robfig/cron, six fields with seconds) accepts it, else :class:`ConfigError`."""
    expression = expression.strip()
    if expression in _DESCRIPTORS:
        return expression
    parts = expression.split()
    if len(parts) != 6:
        raise ConfigError(
            f"cron expression {expression!r} has {len(parts)} fields; KFP's has 6: second minute hour "
            f"day-of-month month day-of-week (e.g. {NIGHTLY!r})"
        )
    for part, (field, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            base, _, step = item.partition("/")
            if step and (not step.isdigit() or int(step) < 1):
                raise ConfigError(f"cron {field}: step {step!r} must be a positive number")
            if base in ("*", "?"):
                if base == "?" and field not in ("day of month", "day of week"):
                    raise ConfigError(f"cron {field}: '?' is only for the day fields")
                continue
            first, _, last = base.partition("-")
            start = _value(first, low, high, names, field)
            if last and _value(last, low, high, names, field) < start:
                raise ConfigError(f"cron {field}: range {base!r} runs backwards")
    return expression


def pipeline_parameters(package_path: str | Path) -> dict[str, dict[str, Any]]:
    """The compiled pipeline's parameters: name → ``{"parameterType", "defaultValue", …}``."""
    spec = next(yaml.safe_load_all(Path(package_path).read_text(encoding="utf-8")))
    return spec["root"]["inputDefinitions"]["parameters"]


def recurring_run_arguments(
    package_path: str | Path,
    *,
    experiment_id: str,
    job_name: str,
    cron: str = NIGHTLY,
    params: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The keyword arguments of ``kfp.Client.create_recurring_run`` for ``package_path``, checked."""
    known = pipeline_parameters(package_path)
    checked: dict[str, Any] = {}
    for name, value in (params or {}).items():
        if name not in known:
            raise ConfigError(
                f"{package_path}: no pipeline parameter {name!r} (known: {', '.join(sorted(known))})"
            )
        kind = _PARAMETER_TYPES[known[name]["parameterType"]]
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ConfigError(f"parameter {name}: expected true or false, got {value!r}")
            value = value.lower() == "true"
        try:
            checked[name] = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"parameter {name}: expected {kind.__name__}, got {value!r}") from None
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}", job_name):
        raise ConfigError(f"recurring run name {job_name!r}: letters, digits, ' ', '.', '_' and '-' only")
    return {
        "experiment_id": experiment_id,
        "job_name": job_name,
        "description": description,
        "cron_expression": validate_cron(cron),
        "max_concurrency": 1,
        "no_catchup": True,
        "params": checked,
        "pipeline_package_path": str(package_path),
        "enabled": True,
        "enable_caching": False,
        "service_account": PIPELINE_SERVICE_ACCOUNT,
    }


def schedule(
    host: str,
    package_path: str | Path,
    *,
    experiment: str,
    job_name: str,
    cron: str = NIGHTLY,
    params: dict[str, Any] | None = None,
    namespace: str | None = None,
):
    """Create the recurring run on the KFP server at ``host``; returns KFP's ``V2beta1RecurringRun``."""
    import kfp

    client = kfp.Client(host=host, namespace=namespace)
    experiment_id = client.create_experiment(experiment, namespace=namespace).experiment_id
    arguments = recurring_run_arguments(
        package_path, experiment_id=experiment_id, job_name=job_name, cron=cron, params=params
    )
    return client.create_recurring_run(**arguments)
