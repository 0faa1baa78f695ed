"""Your own words: enrolment on the shipped embedder with real recordings, the words file, bad
enrolments, and the words heard by Recognizer, StreamingRecognizer and the CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import EXAMPLES, MINI, SHIPPED, SR, needs
from speechlstm import Recognizer, read_audio
from speechlstm.checkpoint import DEFAULT_EMBEDDER, WORDS_FILE, load_words
from speechlstm.enroll import Embedder, WordSpotter, enroll, merge, remove
from speechlstm.errors import CheckpointError, EnrollError
from speechlstm.stream import StreamingRecognizer

pytestmark = [pytest.mark.skipif(not (SHIPPED.exists() and DEFAULT_EMBEDDER.exists()),
                                 reason="no shipped checkpoint or embedder"), needs(MINI)]
WORD = "sheila"  # never a class of the embedder (recipes/embedder.toml leaves it out)


@pytest.fixture(scope="module")
def embedder():
    return Embedder.from_checkpoint()


@pytest.fixture(scope="module")
def rec():
    return Recognizer.from_checkpoint(runtime="eager", device="cpu")


@pytest.fixture(scope="module")
def clips():
    return sorted((MINI / WORD).glob("*.wav"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, embedder, rec, clips):
    out = tmp_path_factory.mktemp("words")
    enroll(WORD, clips[:5], out, embedder=embedder, classifier=rec)
    return out


def test_enrolment_writes_a_self_describing_words_file(folder, embedder, clips):
    raw = json.loads((folder / WORDS_FILE).read_text())
    assert raw["format"] == "speechlstm-words" and raw["version"] == 1
    assert raw["embedder_digest"] == embedder.digest
    words = load_words(folder)
    entry = words.words[WORD]
    assert len(entry.weights) == embedder.negatives.shape[1]
    assert [(folder / c).is_file() for c in entry.clips] == [True] * 5
    assert min(entry.scores) > entry.threshold  # every enrolment clip clears its own threshold


def test_the_word_is_heard_in_other_speakers_clips_and_commands_stay_commands(folder, embedder, rec, clips):
    words_rec = Recognizer.from_checkpoint(runtime="eager", device="cpu", words=WordSpotter.load(folder, embedder))
    assert words_rec.labels == [*rec.labels, WORD]
    heard = [p.label for p in words_rec.predict_batch(clips[5:])]  # speakers not enrolled
    assert heard.count(WORD) >= 0.75 * len(heard), heard  # enrolled from five speakers: others hear it
    commands = sorted(EXAMPLES.glob("*.wav"))
    assert [p.label for p in words_rec.predict_batch(commands)] == [p.label for p in rec.predict_batch(commands)]
    others = [f for w in ("house", "bird", "wow", "marvin") for f in sorted((MINI / w).glob("*.wav"))]
    taken = [p.label for p in words_rec.predict_batch(others)].count(WORD)
    assert taken <= 0.04 * len(others), taken


def test_merge_keeps_rows_summing_to_one_and_only_splits_unknown():
    labels = ["_silence_", "_unknown_", "yes"]
    probs = np.array([[0.1, 0.7, 0.2], [0.0, 0.1, 0.9]], np.float32)
    words = np.array([[0.9, 0.3], [0.99, 0.0]], np.float32)
    out = merge(probs, labels, words)
    assert out.shape == (2, 5) and np.allclose(out.sum(axis=1), 1.0)
    assert np.allclose(out[:, [0, 2]], probs[:, [0, 2]])  # the commands' probabilities are untouched
    assert out[0].argmax() == 3 and out[1].argmax() == 2  # a word wins only where unknown did


def test_streaming_hears_the_word_whatever_the_chunk_size(folder, embedder, clips):
    words_rec = Recognizer.from_checkpoint(runtime="eager", device="cpu",
                                           words=WordSpotter.load(folder, embedder))
    rng = np.random.default_rng(0)
    gap = (0.002 * rng.standard_normal(SR)).astype(np.float32)
    audio = np.concatenate([gap, read_audio(clips[0], SR)[0], gap, gap])

    def run(chunk):
        s = StreamingRecognizer(words_rec)
        out = [d for i in range(0, len(audio), chunk) for d in s.push(audio[i : i + chunk])]
        return [(d.label, round(d.time_ms)) for d in out + s.push(np.zeros(0, np.float32), last=True)]

    heard = run(1600)
    assert [label for label, _ in heard] == [WORD], heard
    assert run(160) == heard == run(7777)


def test_bad_enrolments_say_what_to_do(tmp_path, embedder, rec, clips):
    def bad(word, sources, match):
        with pytest.raises(EnrollError, match=match):
            enroll(word, sources, tmp_path / "w", embedder=embedder, classifier=rec)
        assert not (tmp_path / "w" / WORDS_FILE).exists()  # nothing half-written

    bad(WORD, clips[:2], "give 3 to 10")
    bad(WORD, clips[:11], "give 3 to 10")
    silence = tmp_path / "silence.wav"
    sf.write(silence, np.zeros(SR, np.float32), SR)
    bad(WORD, [*clips[:3], silence], "no speech heard")
    far = tmp_path / "far.wav"  # the word at -46 dBFS, the others near -25: said far from the microphone
    x = read_audio(clips[4], SR)[0]
    sf.write(far, x * 10 ** (-46 / 20) / np.sqrt(np.mean(x**2)), SR)
    bad(WORD, [*clips[:4], far], "dB quieter than your other recordings")
    bad("stop", clips[:5], "already one of the model's labels")
    bad("my word!", clips[:5], "cannot name a word")
    stops = sorted((MINI / "stop").glob("*.wav"))[:5]
    bad("stopp", stops, "sounds like the command 'stop'")
    mixed = [*clips[:4], *sorted((MINI / "bird").glob("*.wav"))[:1]]
    bad(WORD, mixed, "does not sound like the other recordings")


def test_a_word_like_an_enrolled_word_is_refused_and_remove_frees_it(tmp_path, embedder, rec, clips):
    enroll(WORD, clips[:5], tmp_path, embedder=embedder, classifier=rec)
    with pytest.raises(EnrollError, match="sounds like your word 'sheila'"):
        enroll("shayla", clips[5:10], tmp_path, embedder=embedder, classifier=rec)
    remove(WORD, tmp_path)
    assert load_words(tmp_path).words == {} and not (tmp_path / WORD).exists()
    enroll("shayla", clips[5:10], tmp_path, embedder=embedder, classifier=rec)
    assert sorted(load_words(tmp_path).words) == ["shayla"]
    with pytest.raises(EnrollError, match="is not enrolled"):
        remove(WORD, tmp_path)


def test_the_false_accept_rate_sets_how_many_negatives_clear_the_threshold(tmp_path, embedder, rec, clips):
    entries = {rate: enroll(WORD, clips[:5], tmp_path / str(rate), embedder=embedder, classifier=rec,
                            false_accept_rate=rate) for rate in (0.005, 0.05)}
    through = {}
    for rate, entry in entries.items():  # the negatives the threshold was set on: half fitted on, half held out
        scores = embedder.negatives @ np.asarray(entry.weights, np.float32) + entry.bias
        through[rate] = float(np.mean(scores > entry.threshold))
        assert rate / 4 <= through[rate] <= rate, (rate, through[rate])
    assert entries[0.05].threshold < entries[0.005].threshold
    for bad in (0.0, 0.5, -0.1):
        with pytest.raises(EnrollError, match="give a share between 0 and 0.5"):
            enroll(WORD, clips[:5], tmp_path / "bad", embedder=embedder, classifier=rec, false_accept_rate=bad)


def test_corrupt_or_foreign_words_files_are_refused(tmp_path, folder, embedder):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / WORDS_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a words file"):
        load_words(broken)
    (broken / WORDS_FILE).write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a speechlstm words file"):
        load_words(broken)
    foreign = json.loads((folder / WORDS_FILE).read_text())
    foreign["embedder_digest"] = "0" * 64
    (broken / WORDS_FILE).write_text(json.dumps(foreign))
    with pytest.raises(CheckpointError, match="enrolled on another embedding model"):
        WordSpotter.load(broken, embedder)
    with pytest.raises(CheckpointError, match="no enrolled words here"):
        load_words(tmp_path / "none")


def test_cli_enroll_list_predict_remove(tmp_path, clips):
    words = tmp_path / "words"

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "speechlstm", *map(str, args)], capture_output=True, text=True,
                             check=False, timeout=300)
        return out.returncode, out.stdout + out.stderr

    code, out = cli("enroll", WORD, *clips[:5], "--words", words)
    assert code == 0 and f"enrolled '{WORD}' from 5 recordings" in out, out
    code, out = cli("enroll", "--list", "--words", words)
    assert code == 0 and out.startswith(f"{WORD}\t5 clips"), out
    code, out = cli("predict", clips[0], "--words", words)
    assert code == 0 and WORD in out, out
    code, out = cli("enroll", WORD, *clips[:5], "--words", tmp_path / "picky", "--false-accept-rate", "0.001")
    assert code == 0 and load_words(tmp_path / "picky").words[WORD].threshold > load_words(words).words[WORD].threshold
    code, out = cli("enroll", WORD, *clips[:2], "--words", words)
    assert code != 0 and "give 3 to 10" in out and "Traceback" not in out, out
    code, out = cli("enroll", "--remove", WORD, "--words", words)
    assert code == 0 and f"removed '{WORD}'" in out, out
    assert load_words(words).words == {}
