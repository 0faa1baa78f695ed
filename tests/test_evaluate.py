import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES, SHIPPED, TEST_MINI, needs_test_mini
from speechlstm.evaluate import (calibration, confusion_matrix, evaluate, find_items, per_class,
                                 to_vocabulary, top_confusions, wilson_interval, write_report)

needs_model = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
LABELS = ["_silence_", "_unknown_", "yes", "no"]


def test_metrics_match_hand_computed_values():
    y_true = np.array([2, 2, 2, 3, 3, 1, 0, 0])
    y_pred = np.array([2, 2, 3, 3, 2, 1, 0, 1])
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 2, 1], [0, 0, 1, 1]]
    pc = per_class(cm, LABELS)
    assert pc["yes"] == {"precision": 0.6667, "recall": 0.6667, "f1": 0.6667, "support": 3}
    assert pc["_unknown_"] == {"precision": 0.5, "recall": 1.0, "f1": 0.6667, "support": 1}
    assert pc["_silence_"]["recall"] == 0.5 and pc["_silence_"]["precision"] == 1.0
    assert top_confusions(cm, LABELS)[:1][0]["count"] == 1
    lo, hi = wilson_interval(5, 8)  # textbook Wilson interval for 5/8
    assert lo == pytest.approx(0.3057, abs=1e-3) and hi == pytest.approx(0.8632, abs=1e-3)
    cal = calibration(np.array([0.9, 0.9, 0.6, 0.6]), np.array([True, False, True, True]), bins=10)
    # bins: 0.9 -> acc 0.5 (|0.5-0.9| = 0.4), 0.6 -> acc 1.0 (0.4); ECE = 0.5*0.4 + 0.5*0.4
    assert cal["ece"] == pytest.approx(0.4)
    assert to_vocabulary("marvin", LABELS) == "_unknown_" and to_vocabulary("yes", LABELS) == "yes"


def _three_layouts(tmp_path):
    """The same six clips + one out-of-vocabulary word as each layout."""
    clips = sorted(EXAMPLES.glob("*.wav"))
    ds, canon = tmp_path / "dataset", tmp_path / "canonical"
    rows, listed = ["path,label"], []
    for i, path in enumerate(clips):
        word, speaker = path.name.split("_")[0], path.name.split("_")[1]
        (ds / word).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ds / word / f"{speaker}_nohash_{i}.wav")
        listed.append(f"{word}/{speaker}_nohash_{i}.wav")
        (canon / word).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, canon / word / f"{speaker}_nohash_{i}.wav")
        rows.append(f"{path},{word}")
    oov = clips[0]  # a clip labelled as another word: must count as _unknown_
    (ds / "marvin").mkdir()
    shutil.copy(oov, ds / "marvin" / "abc_nohash_0.wav")
    listed.append("marvin/abc_nohash_0.wav")
    (canon / "_unknown_").mkdir()
    shutil.copy(oov, canon / "_unknown_" / "marvin_abc_nohash_0.wav")
    rows.append(f"{oov},marvin")
    (ds / "testing_list.txt").write_text("\n".join(listed) + "\n")
    (ds / "validation_list.txt").write_text("")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return ds, canon, tmp_path / "manifest.csv"


def test_layout_detection(tmp_path):
    ds, canon, manifest = _three_layouts(tmp_path)
    assert find_items(ds, "test").layout == "dataset" and len(find_items(ds, "test").paths) == 7
    assert find_items(ds, "validation").paths == []
    assert find_items(canon).layout == "canonical"
    items = find_items(manifest)
    assert items.layout == "manifest" and items.labels[-1] == "marvin" and len(items.paths) == 7


@needs_model
def test_all_layouts_give_the_same_accuracy_and_reports_are_written(tmp_path):
    from speechlstm import Recognizer

    rec = Recognizer.from_checkpoint(device="cpu")
    ds, canon, manifest = _three_layouts(tmp_path)
    reports = [evaluate(rec, find_items(x, "test"), progress=False) for x in (ds, canon, manifest)]
    assert len({r.data["accuracy"] for r in reports}) == 1
    assert all(np.array_equal(r.cm, reports[0].cm) for r in reports)
    assert reports[0].data["per_class"]["_unknown_"]["support"] == 1  # "marvin" counted as _unknown_
    d = reports[0].data  # the open-set rate is reported on its own, and is that one clip's outcome
    assert d["oov_to_unknown"] == d["per_class"]["_unknown_"]["recall"] in (0.0, 1.0)
    assert d["backend"] == "onnx-int8"  # the default CPU runtime
    out = write_report(reports[1], tmp_path / "report")
    data = json.loads((out / "report.json").read_text())
    for key in ("accuracy", "accuracy_ci95", "per_class", "top_confusions", "ece", "latency_ms", "unreadable"):
        assert key in data
    for png in ("confusion.png", "reliability.png"):
        raw = (out / png).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 5000
        from matplotlib.image import imread

        assert imread(out / png).ndim == 3
    assert (out / "confusion.csv").read_text().splitlines()[0].startswith("true\\predicted,_silence_")
    assert "accuracy" in (out / "report.md").read_text()


@needs_model
def test_a_corrupt_clip_is_reported_not_fatal(tmp_path):
    _, canon, _ = _three_layouts(tmp_path)
    (canon / "yes" / "broken_nohash_0.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    done = subprocess.run([sys.executable, "-m", "speechlstm", "evaluate", "--data", str(canon), "--out",
                           str(tmp_path / "r"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["clips"] == 8 and data["evaluated"] == 7
    assert [u["path"].rsplit("/", 1)[-1] for u in data["unreadable"]] == ["broken_nohash_0.wav"]


@needs_model
@needs_test_mini
def test_shipped_model_report_on_test_mini_matches_the_card(tmp_path):
    """The figures in checkpoints/README.md are what evaluate produces (fp32 and int8)."""
    from speechlstm import Recognizer

    card = (SHIPPED.parent / "README.md").read_text()
    report = evaluate(Recognizer.from_checkpoint(device="cpu"), find_items(TEST_MINI), progress=False)
    assert report.data["evaluated"] == 452 and report.data["accuracy"] >= 0.85
    assert f"{100 * report.data['accuracy']:.2f}%" in card
    assert f"{100 * report.data['oov_to_unknown']:.1f}%" in card
    int8 = evaluate(Recognizer.from_checkpoint(device="cpu", int8=True), find_items(TEST_MINI), progress=False)
    assert f"{100 * int8.data['accuracy']:.2f}%" in card
