"""The live loop: over a recording (no device), and through a real audio
stack (a private PulseAudio server with a null sink, recorded via sounddevice)."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import EXAMPLES, SHIPPED
from speechlstm import read_audio

pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped checkpoint")
WORDS = ["yes", "no", "up", "left", "stop", "go"]  # every command with an example clip: each must come out


def _clip(word):
    return next(EXAMPLES.glob(f"{word}_*.wav"))


def _recording(tmp_path, rate=44100):
    rng = np.random.default_rng(0)
    parts = [0.002 * rng.standard_normal(rate).astype(np.float32)]
    for word in WORDS:
        x, _ = read_audio(_clip(word), rate)
        parts += [x, 0.002 * rng.standard_normal(int(1.5 * rate)).astype(np.float32)]
    path = tmp_path / "session.wav"
    sf.write(path, np.concatenate(parts), rate, subtype="PCM_16")
    return path


def test_live_loop_on_a_recording_prints_each_command_once(tmp_path):
    path = _recording(tmp_path)
    done = subprocess.run([sys.executable, "-m", "speechlstm", "live", "--input", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    dets = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["label"] for d in dets] == WORDS
    assert "input overflows" in done.stderr and "CPU" in done.stderr
    plain = subprocess.run([sys.executable, "-m", "speechlstm", "live", "--input", str(path)],
                           capture_output=True, text=True, timeout=120)
    first = plain.stdout.splitlines()[0]
    assert first.startswith("[00:0") and first.split()[1] == "yes"  # "[00:01.800] yes 0.93"


def _has_portaudio() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


def test_save_needs_a_device(tmp_path):
    path = _recording(tmp_path)
    done = subprocess.run([sys.executable, "-m", "speechlstm", "live", "--input", str(path), "--save",
                           str(tmp_path / "x.wav")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--save records a device" in done.stderr
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.skipif(not _has_portaudio(), reason="PortAudio (libportaudio2) is not installed")
def test_missing_device_is_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "speechlstm", "live", "--device", "no-such-mic-42",
                           "--duration-s", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no-such-mic-42" in done.stderr and "available devices" in done.stderr


@pytest.fixture
def pulse(tmp_path):
    """A private PulseAudio server whose default source is a null sink's monitor."""
    if not shutil.which("pulseaudio") or not shutil.which("paplay"):
        pytest.skip("pulseaudio / paplay are not installed")
    if not _has_portaudio():
        pytest.skip("PortAudio (libportaudio2) is not installed")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PULSE_RUNTIME_PATH": str(runtime / "pulse"),
           "HOME": str(tmp_path)}
    server = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "-n", "--disallow-exit",
         "--load=module-native-protocol-unix", "--load=module-null-sink sink_name=speechlstm_sink",
         f"--log-target=file:{tmp_path / 'pulse.log'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if time.time() > deadline or server.poll() is not None:
            server.kill()
            pytest.skip(f"pulseaudio did not start: {(tmp_path / 'pulse.log').read_text()[-500:]}")
        time.sleep(0.2)
    for cmd in (["pactl", "set-default-sink", "speechlstm_sink"],
                ["pactl", "set-default-source", "speechlstm_sink.monitor"]):
        subprocess.run(cmd, env=env, check=True)
    yield env
    server.terminate()
    server.wait(timeout=10)


def test_real_audio_stack_commands_come_out_in_order(pulse, tmp_path):
    heard = tmp_path / "heard.wav"
    listen = subprocess.Popen([sys.executable, "-m", "speechlstm", "live", "--device", "pulse", "--json",
                               "--duration-s", "30", "--save", str(heard)], env=pulse, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        line = listen.stderr.readline()  # "listening; ..." once the input stream is about to open
        if line.startswith("speechlstm: exporting"):  # the first use of the default runtime
            line = listen.stderr.readline()
        assert "listening" in line, line + listen.stderr.read()
        time.sleep(2.0)
        # One stream, the words over a steady noise floor, as a microphone hears them. A stream per
        # word loses its first ~80 ms to PulseAudio's start-up and leaves digital silence before the
        # word, which costs this "left" clip a third of its confidence (see the model card).
        subprocess.run(["paplay", "--device=speechlstm_sink", str(_recording(tmp_path))], env=pulse,
                       check=True, timeout=60)
        time.sleep(1.5)
        listen.send_signal(2)  # Ctrl-C: a clean stop with a summary
        out, err = listen.communicate(timeout=30)
    finally:
        if listen.poll() is None:
            listen.kill()
    assert listen.returncode == 0, err
    dets = [json.loads(x) for x in out.splitlines()]
    # --save recorded what the loop heard; replayed, it gives the same detections at the same times
    seconds = float(err.strip().splitlines()[-1].split(" s of audio")[0])
    assert abs(sf.info(heard).duration - seconds) < 0.2, (sf.info(heard), err)
    replay = subprocess.run([sys.executable, "-m", "speechlstm", "live", "--input", str(heard), "--json"],
                            capture_output=True, text=True, timeout=120)
    again = [json.loads(x) for x in replay.stdout.splitlines()]
    assert [(d["label"], d["time_ms"]) for d in again] == [(d["label"], d["time_ms"]) for d in dets], replay.stderr
    assert [d["label"] for d in dets] == WORDS, (dets, err)  # every played command comes out, in order
    assert "input overflows" in err  # the loop reports its overflow count on exit
