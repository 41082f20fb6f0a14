"""The smoke tests' own machinery, checked without a container engine: the image content scan finds what it
must, and the KFP launcher emulation builds the executor input the way KFP does and refuses what it cannot do.
"""

from __future__ import annotations

import json

import pytest

from tests.images.image_fs import Entry, scan
from tests.images.kfp_launcher import KFP_OUTPUT_FILE, compiled_task, executor_input, substitute_placeholders


def test_scan_finds_planted_credentials_writable_paths_and_tools():
    def entry(path, mode=0o644, uid=0, gid=0, kind="file", content=b""):
        return Entry(path, mode, uid, gid, kind, len(content)), lambda: content

    fake_key = b"AKIA" + b"Q" * 16
    found = scan(
        [
            entry("etc/medgo.conf", content=b"aws_access_key_id = " + fake_key),
            entry("root/.netrc", content=b"machine example.org"),
            entry("etc/pip.conf", content=b"[global]\nindex-url = https://user:s3cret@pypi.example/simple\n"),
            entry(
                "opt/venv/lib/python3.11/site-packages/botocore/x.json", content=fake_key
            ),  # third-party: not read
            entry(
                "opt/venv/lib/python3.11/site-packages/medgo/x.py",
                content=b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 64,
            ),
            entry("tmp", mode=0o1777, kind="dir"),
            entry("opt/cache", mode=0o777, kind="dir"),
            entry("home/medgo", mode=0o755, uid=1000, gid=1000, kind="dir"),
            entry("usr/lib/x", mode=0o777, kind="link"),
            entry("usr/bin/gcc", mode=0o755),
            entry("wheels/deps/torch-2.13.0-cp311-none-any.whl"),
            entry("usr/share/python-wheels/pip-23.0.1-py3-none-any.whl"),
        ]
    )
    assert [c.split(":")[0] for c in found["credential"]] == [
        "etc/medgo.conf",
        "root/.netrc",
        "etc/pip.conf",
        "opt/venv/lib/python3.11/site-packages/medgo/x.py",
    ]
    assert [w.split()[0] for w in found["writable"]] == ["opt/cache", "home/medgo"]
    assert found["compiler"] == ["usr/bin/gcc"] and found["wheel"] == [
        "wheels/deps/torch-2.13.0-cp311-none-any.whl"
    ]


def test_executor_input_fills_defaults_and_names_every_output_artifact():
    component_spec, container = compiled_task("prepare-corpus")
    uris = {"clean": "s3://b/run/clean", "metrics": "s3://b/run/metrics"}
    executor = executor_input(component_spec, {"corpus_uri": "/data/corpus"}, uris)
    assert executor["inputs"]["parameterValues"] == {
        "corpus_uri": "/data/corpus",
        "min_chars": 20,
        "min_chinese_ratio": 0.3,
        "scrub_pii": True,
    }
    assert isinstance(executor["inputs"]["parameterValues"]["min_chars"], int)
    clean = executor["outputs"]["artifacts"]["clean"]["artifacts"][0]
    assert clean["uri"] == uris["clean"] and clean["type"]["schemaTitle"] == "system.Dataset"
    assert executor["outputs"]["outputFile"] == KFP_OUTPUT_FILE
    words = substitute_placeholders(container["args"], json.dumps(executor))
    assert json.loads(words[words.index("--executor_input") + 1]) == executor
    with pytest.raises(AssertionError, match="no value for the required input parameter 'corpus_uri'"):
        executor_input(component_spec, {}, uris)
    with pytest.raises(AssertionError, match="does not emulate"):
        substitute_placeholders(["{{$.inputs.parameters['corpus_uri']}}"], "{}")
