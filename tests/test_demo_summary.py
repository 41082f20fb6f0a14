"""``print_demo_summary`` shows the served answer as clean text."""

from __future__ import annotations

from medgo.demo import print_demo_summary


def test_the_served_answer_is_printed_without_control_bytes_or_replacement_characters(capsys):
    answer = "建议\x1b[2J低盐\ufffd饮食\x07，[bold]定期[/bold]复查。"
    summary = {
        "tasks": {
            "deploy": {
                "artifacts": {},
                "metrics": {},
                "parameters": {"answer": answer, "endpoint": "http://127.0.0.1:1/openai/v1/chat/completions"},
            }
        },
        "seconds": 1.0,
        "out_dir": "/tmp/demo",
    }
    print_demo_summary(summary)
    printed = capsys.readouterr().out
    assert "建议[2J低盐饮食，[bold]定期[/bold]复查。" in printed
    assert "\ufffd" not in printed
    assert not any(ord(ch) < 0x20 and ch not in "\n\t" for ch in printed)
