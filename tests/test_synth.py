"""`speechlstm synth`: real renders with Debian's TTS engines, cached, in the
dataset layout that training reads."""

import csv
import shutil

import numpy as np
import pytest
import soundfile as sf

from speechlstm.data import SpeechCommandsIndex
from speechlstm.synth import available_engines, plan, synthesize

ENGINES = ["espeak-ng", "flite", "festival"]
pytestmark = pytest.mark.skipif(
    sorted(available_engines()) != sorted(ENGINES),
    reason="needs espeak-ng, flite and festival (apt-get install espeak-ng flite festival festvox-kallpc16k)")


def test_renders_every_engine_into_the_dataset_layout_and_reuses_the_cache(tmp_path):
    out = tmp_path / "synth"
    counts = synthesize(out, ("yes", "stop it"), per_word=3, engines=ENGINES, jobs=2, progress=False)
    assert counts == {"rendered": 6, "cached": 0, "failed": 0}
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert {r["engine"] for r in rows} == set(ENGINES) and {r["text"] for r in rows} == {"yes", "stop it"}
    for r in rows:
        x, sr = sf.read(out / r["file"], dtype="float32")
        assert sr == 16000 and x.shape == (16000,)
        active = np.flatnonzero(np.abs(x) > 0.02)
        assert len(active) > 1600  # at least 0.1 s of speech
        assert 0.75 <= float(r["speed"]) <= 1.35 and 0.75 <= float(r["pitch"]) <= 1.3
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["stop_it", "yes"]
    # a rerun renders nothing; deleting one file renders just that one
    assert synthesize(out, ("yes", "stop it"), per_word=3, engines=ENGINES, progress=False)["cached"] == 6
    (out / rows[0]["file"]).unlink()
    assert synthesize(out, ("yes", "stop it"), per_word=3, engines=ENGINES, progress=False)["rendered"] == 1
    # training reads it as extra data
    root = tmp_path / "sc"
    (root / "yes").mkdir(parents=True)
    shutil.copy(out / rows[0]["file"], root / "yes" / "aaaa0000_nohash_0.wav")
    index = SpeechCommandsIndex.scan(root)
    assert index.add_training_dir(out) == 6
    assert all(c.split == "train" for c in index.clips if c.synthetic)


def test_plan_is_seeded_and_varied():
    a = plan(("go",), 12, ENGINES, seed=0)
    assert a == plan(("go",), 12, ENGINES, seed=0) and a != plan(("go",), 12, ENGINES, seed=1)
    assert len({r.voice for _, r in a}) >= 5 and len({round(r.speed, 2) for _, r in a}) == 12


def test_unknown_engine_is_a_clear_error(tmp_path):
    from speechlstm.errors import DataError

    with pytest.raises(DataError, match="not installed"):
        synthesize(tmp_path, ("yes",), per_word=1, engines=["sam"], progress=False)
