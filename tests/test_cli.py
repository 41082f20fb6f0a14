"""The `medgo` command: bad input is one line on stderr, exit code 2, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def medgo(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "medgo.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.fixture()
def bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("min_chars: [1,\n")
    return path


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["data", "prepare", "/no/such/corpus", "OUT"], ["corpus not found", "/no/such/corpus"]),
        (["data", "prepare"], ["Missing argument"]),
        (["data", "prepare", ".", "OUT", "--bogus"], ["No such option: --bogus"]),
        (["nosuchcommand"], ["No such command"]),
        (["train", "--config", "/no/such.yaml"], ["config file not found: /no/such.yaml"]),
        (["data", "pack", "/no/clean", "OUT", "--tokenizer", "/no/tok"], ["not found"]),
        (
            ["eval", "--candidate", "/no/c", "--baseline", "/no/b", "--data", "/no/d", "--out", "OUT"],
            ["not found"],
        ),
        (["deploy", "--model", "/no/model", "--out", "OUT"], ["model not found: /no/model"]),
    ],
)
def test_bad_input_is_one_line_exit_2(args, fragments, tmp_path):
    assert_one_line_error(medgo(*[a.replace("OUT", str(tmp_path / "out")) for a in args]), *fragments)


def test_malformed_config_names_file_and_line(bad_yaml, samples_dir, tmp_path):
    result = medgo(
        "data", "prepare", str(samples_dir / "corpus"), str(tmp_path / "o"), "--config", str(bad_yaml)
    )
    assert_one_line_error(result, str(bad_yaml), "malformed YAML")


def test_unknown_key_is_named(samples_dir, tmp_path):
    result = medgo(
        "data", "sft", str(samples_dir / "sft"), str(tmp_path / "o"), "--set", "only_aproved=false"
    )
    assert_one_line_error(result, "only_aproved: unknown key")


def test_prepare_on_samples_prints_reconciled_counts(samples_dir, tmp_path):
    # the samples quarantine 6.5 % of their lines on purpose; the default limit is 1 %
    limit = ("--set", "max_quarantine_share=0.1")
    result = medgo("data", "prepare", str(samples_dir / "corpus"), str(tmp_path / "clean"), *limit)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["in"] == counts["kept"] + counts["filtered"] + counts["duplicates"] + counts["quarantined"]
    assert counts["quarantined"] > 0 and counts["duplicates"] > 0


def test_every_command_explains_its_options():
    for args in (
        ["--help"],
        ["data", "prepare", "--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["demo", "--help"],
        ["deploy", "--help"],
        ["pipeline", "compile", "--help"],
    ):
        result = medgo(*args)
        assert result.returncode == 0 and "Usage" in result.stdout, args


def test_serve_command_answers_on_loopback(sample_model_dir, tmp_path):
    """`medgo serve` runs the real ModelServer in the foreground; asked over HTTP, it answers."""
    import time

    from medgo.processes import free_port, stop_process_tree
    from medgo.serve.local import ask, wait_until_ready

    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medgo.cli",
                "serve",
                "--model",
                str(sample_model_dir),
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_ready(
                proc, f"{base}/v2/health/ready", deadline=time.monotonic() + 180, log_path=log_path
            )
            assert isinstance(ask(base, "发热怎么办？", max_tokens=4), str)
        finally:
            stop_process_tree(proc)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--log-level", "BOGUS", "version"], ["--log-level", "BOGUS"]),
        (["serve", "--model", "m", "--port", "99999"], ["--port"]),
        (["demo", "--out", "OUT", "--set", "nope=1"], ["unknown pipeline parameter(s): nope"]),
    ],
)
def test_bad_options_are_one_line_exit_2(args, fragments, tmp_path):
    assert_one_line_error(medgo(*[a.replace("OUT", str(tmp_path / "demo")) for a in args]), *fragments)
    assert not (tmp_path / "demo").exists()  # rejected before any work


def test_cluster_commands_outside_a_cluster_say_so(tmp_path, sample_model_dir):
    env_home = tmp_path / "home"  # no kubeconfig here
    env_home.mkdir()
    import os

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "medgo.cli",
            "deploy",
            "--model",
            str(sample_model_dir),
            "--out",
            str(tmp_path / "rec"),
            "--model-uri",
            "s3://medgo-models/candidate",
            "--set",
            "target=kserve",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": str(env_home), "KUBECONFIG": str(env_home / "none")},
    )
    assert_one_line_error(result, "no Kubernetes cluster reachable")


def test_bad_inference_service_name_is_one_line_before_any_cluster_call(tmp_path, sample_model_dir):
    """The builder's InvalidSpec is a MedgoError: the CLI names the parameter instead of printing a traceback."""
    result = medgo(
        "deploy",
        "--model",
        str(sample_model_dir),
        "--out",
        str(tmp_path / "rec"),
        "--set",
        "target=kserve",
        "--set",
        "name=Medgo_Prod",
    )
    assert_one_line_error(result, "InferenceService name 'Medgo_Prod'", "DNS-1035")
