"""Scoring the streaming recognizer, like TensorFlow's test_streaming_accuracy,
and choosing its rule: run it over a recording with ground truth
(``stream_make``), match detections to spoken clips, sweep thresholds for the
correct / missed / wrong against false-alarms-per-hour curves that wake-word
benchmarks publish, and calibrate per-command thresholds on a validation
stream. The model runs once per recording; sweeps replay its recorded
posteriors through ``PeakPicker``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .audio import read_audio
from .checkpoint import save_checkpoint
from .config import StreamConfig
from .errors import DataError
from .infer import Recognizer
from .labels import COMMANDS10, UNKNOWN
from .stream import Detection, PeakPicker, StreamingRecognizer, gate_detections, speech_segments
from .stream_make import Event, read_truth
from .vad import SpeechSegments

# The names of the streaming scores (score_stream, evaluate, sweep, calibration, the CLI's tables, the plots)
CORRECT, MISSED, WRONG = "correct_pct", "missed_pct", "wrong_pct"  # % of the commands said
FALSE_ALARMS = "false_alarms_per_hour"  # detections away from every spoken clip, per hour between them
SPEECH_FALSE_ALARMS = "speech_false_alarms_per_hour"  # per hour of command-free speech (--speech-audio)
DELAY = "median_delay_ms"  # end of the word to its report
SWEEP_COLUMNS = ("threshold", CORRECT, MISSED, WRONG, FALSE_ALARMS, SPEECH_FALSE_ALARMS, DELAY)

SWEEP_THRESHOLDS = tuple(round(0.30 + 0.05 * i, 2) for i in range(14))  # 0.30 ... 0.95
CALIBRATION_THRESHOLDS = tuple(t for t in SWEEP_THRESHOLDS if t >= 0.4)  # lower ones fire on partial words


@dataclass
class Recording:
    """One scored recording: its model posteriors per hop, its truth (empty for
    speech that holds no commands: every detection there is a false alarm)."""

    times_ms: np.ndarray  # (H,) end of each hop's window
    probs: np.ndarray  # (H, n_labels) raw posteriors
    truth: list[Event]
    duration_ms: float
    hop_ms: float
    clip_ms: float
    clip_accuracy_pct: float | None = None  # the model on each spoken command's second alone
    vad_probs: np.ndarray | None = None  # (F,) speech probability per voice-activity frame
    vad_frame_ms: float = 32.0
    _segments: dict = field(default_factory=dict, repr=False, compare=False)

    def segments(self, config: StreamConfig) -> SpeechSegments:
        """Its speech segments under ``config``'s voice-activity settings (cached)."""
        if self.vad_probs is None:
            raise ValueError("this recording has no voice-activity probabilities: record it again")
        key = (config.vad_threshold, config.vad_silence_ms)
        if key not in self._segments:
            seg = speech_segments(config, self.vad_frame_ms)
            seg.push(self.vad_probs)
            seg.finish()
            self._segments[key] = seg
        return self._segments[key]

    @property
    def commands(self) -> int:
        return sum(e.label != UNKNOWN for e in self.truth)


def run_stream(streamer: StreamingRecognizer, audio: np.ndarray, chunk: int = 1600,
               progress: bool = True) -> list[Detection]:
    streamer.reset()
    out: list[Detection] = []
    starts = range(0, len(audio), chunk)
    for start in tqdm(starts, desc="streaming", unit="chunk", disable=not progress):
        out += streamer.push(audio[start : start + chunk], last=start + chunk >= len(audio))
    return out


def record(streamer: StreamingRecognizer, audio: np.ndarray, truth: list[Event],
           progress: bool = True) -> tuple[Recording, list[Detection]]:
    """Run the streamer over ``audio`` keeping every hop's posteriors for replays
    (and the model's one-clip accuracy on the same commands)."""
    streamer.trace = []
    detections = run_stream(streamer, audio, progress=progress)
    times = np.array([t for t, _ in streamer.trace], dtype=np.float64)
    probs = np.stack([p for _, p in streamer.trace]) if streamer.trace else np.zeros((0, len(streamer.picker.labels)))
    vad = np.concatenate(streamer.vad_trace) if streamer.vad_trace else np.zeros(0, np.float32)
    rec = Recording(times, probs.astype(np.float32), truth, 1000.0 * len(audio) / streamer.sample_rate,
                    streamer.config.hop_ms, streamer.picker.clip_ms,
                    clip_accuracy(streamer.recognizer, audio, truth), vad, streamer.vad.frame_ms)
    streamer.trace = None
    return rec, detections


def replay(rec: Recording, labels: list[str], config: StreamConfig) -> list[Detection]:
    """The detections ``config``'s rule would give on a recorded run (same hop)."""
    k = dataclasses.replace(config, hop_ms=rec.hop_ms).average_hops  # the recording's hop, as it ran
    csum = np.concatenate([np.zeros((1, rec.probs.shape[1])), np.cumsum(rec.probs, 0, dtype=np.float64)])
    idx = np.arange(len(rec.probs))
    lo = np.maximum(0, idx - k + 1)
    smooth = ((csum[idx + 1] - csum[lo]) / (idx + 1 - lo)[:, None]).astype(np.float32)
    # Only hops where a command is the top class and clears its threshold, or where a
    # candidate waits out its look-ahead, can change anything: the rule runs on those.
    picker = PeakPicker(labels, config, rec.clip_ms)
    best = smooth.argmax(1)
    candidate = ~np.isin(best, sorted(picker.fillers)) & (smooth[idx, best] >= picker.thresholds[best])
    out: list[Detection] = []
    for i in range(len(smooth)):
        if candidate[i] or picker.waiting:
            det = picker.decide(float(rec.times_ms[i]), smooth[i])
            if det is not None:
                out.append(det)
    det = picker.flush(rec.duration_ms)
    out += [det] if det is not None else []
    return out if config.max_word_ms is None else gate_detections(out, rec.segments(config), config)


def score_stream(detections: list[Detection], truth: list[Event], duration_ms: float,
                 clip_ms: float = 1000.0, tolerance_ms: float = 500.0) -> dict:
    """Match each detection to the spoken clip it fired on.

    A detection whose deciding window ends at t belongs to an event at time e
    when e <= t <= e + clip_ms + tolerance_ms. Per command event: matched
    (some detection), correct (the first one has the right label), wrong,
    missed. Detections that belong to no command event are false positives;
    they are counted per hour of audio outside the command clips (with no
    commands in the truth: per hour of the whole recording). Delay: from the
    end of the word's speech (when the truth has it) to the report.
    """
    commands = [e for e in truth if e.label != UNKNOWN]
    used: set[int] = set()
    correct = wrong = 0
    delays: list[float] = []
    false_pos: list[Detection] = []
    for d in detections:
        hit = next((i for i, e in enumerate(truth)
                    if e.time_ms <= d.time_ms <= e.time_ms + clip_ms + tolerance_ms and i not in used), None)
        if hit is None or truth[hit].label == UNKNOWN:
            false_pos.append(d)
            if hit is not None:
                used.add(hit)
            continue
        used.add(hit)
        if d.label == truth[hit].label:
            correct += 1
            if truth[hit].end_ms is not None:
                delays.append(d.fired_ms - truth[hit].end_ms)
        else:
            wrong += 1
    n = max(1, len(commands))
    command_ms = len(commands) * (clip_ms + tolerance_ms)
    quiet_hours = max(1e-9, (duration_ms - command_ms) / 3.6e6)
    on_unknown = sum(1 for d in false_pos
                     if any(e.label == UNKNOWN and e.time_ms <= d.time_ms <= e.time_ms + clip_ms + tolerance_ms
                            for e in truth))
    return {
        "commands": len(commands),
        "unknown_events": len(truth) - len(commands),
        "detections": len(detections),
        "matched_pct": round(100 * (correct + wrong) / n, 2),
        CORRECT: round(100 * correct / n, 2),
        MISSED: round(100 * (len(commands) - correct - wrong) / n, 2),
        WRONG: round(100 * wrong / n, 2),
        "false_positive_pct": round(100 * len(false_pos) / n, 2),
        "false_positives_on_unknown_speech": on_unknown,
        "false_alarms": len(false_pos),
        FALSE_ALARMS: round(len(false_pos) / quiet_hours, 2),
        DELAY: round(float(np.median(delays)), 1) if delays else None,
        "p90_delay_ms": round(float(np.percentile(delays, 90)), 1) if delays else None,
        "tolerance_ms": tolerance_ms,
        "duration_s": round(duration_ms / 1000, 1),
        "quiet_hours": round(quiet_hours, 5),
    }


def clip_accuracy(recognizer, audio: np.ndarray, truth: list[Event]) -> float | None:
    """The model's one-clip accuracy on the same spoken commands: each event's
    1 s of the recording (the clip and its background) classified on its own."""
    commands = [e for e in truth if e.label != UNKNOWN]
    if not commands:
        return None
    n, rate = recognizer.clip_samples, recognizer.sample_rate
    clips = np.zeros((len(commands), n), np.float32)
    for i, e in enumerate(commands):
        at = int(round(e.time_ms * rate / 1000))
        seg = audio[at : at + n]
        clips[i, : len(seg)] = seg
    pred = recognizer.probabilities(clips).argmax(1)
    labels = recognizer.labels
    return round(100 * float(np.mean([labels[p] == e.label for p, e in zip(pred, commands)])), 2)


def evaluate(recs: list[Recording], speech: list[Recording], labels: list[str], config: StreamConfig,
             tolerance_ms: float = 500.0) -> dict:
    """Score ``config`` on command recordings (pooled) and on command-free speech
    (its false alarms per hour as ``speech_false_alarms_per_hour``)."""
    dets = [(r, replay(r, labels, config)) for r in recs]
    pooled = _pool([score_stream(d, r.truth, r.duration_ms, r.clip_ms, tolerance_ms) for r, d in dets])
    if recs and all(r.clip_accuracy_pct is not None for r in recs):
        n = sum(r.commands for r in recs)
        pooled["clip_accuracy_pct"] = round(sum(r.clip_accuracy_pct * r.commands for r in recs) / n, 2)
    if speech:
        alarms = sum(len(replay(r, labels, config)) for r in speech)
        hours = sum(r.duration_ms for r in speech) / 3.6e6
        pooled[SPEECH_FALSE_ALARMS] = round(alarms / hours, 2)
        pooled["speech_hours"] = round(hours, 3)
    return pooled


def _pool(scores: list[dict]) -> dict:
    if len(scores) == 1:
        return scores[0]
    n = sum(s["commands"] for s in scores)
    out = {"commands": n, "unknown_events": sum(s["unknown_events"] for s in scores),
           "detections": sum(s["detections"] for s in scores)}
    for key in ("matched_pct", CORRECT, MISSED, WRONG, "false_positive_pct"):
        out[key] = round(sum(s[key] * s["commands"] for s in scores) / max(1, n), 2)
    out["false_alarms"] = sum(s["false_alarms"] for s in scores)
    out["quiet_hours"] = sum(s["quiet_hours"] for s in scores)
    out[FALSE_ALARMS] = round(out["false_alarms"] / max(1e-9, out["quiet_hours"]), 2)
    delays = [s[DELAY] for s in scores if s[DELAY] is not None]
    out[DELAY] = float(np.median(delays)) if delays else None
    return out


def sweep(recs: list[Recording], speech: list[Recording], labels: list[str], base: StreamConfig,
          thresholds: tuple[float, ...] = SWEEP_THRESHOLDS) -> list[dict]:
    """One row per global threshold (per-command thresholds cleared), and one for
    ``base`` itself when it has calibrated per-command thresholds."""
    rows = []
    configs = [(f"{t:.2f}", base.with_threshold(t)) for t in thresholds]
    if base.thresholds:
        configs.append(("calibrated", base))
    for name, cfg in tqdm(configs, desc="sweeping thresholds", unit="setting", leave=False):
        rows.append({"threshold": name, **evaluate(recs, speech, labels, cfg)})
    return rows


@dataclass(frozen=True)
class Limits:
    """What calibration aims for: wrong detections (% of commands), false alarms per
    hour on command-free speech (without it: between the commands), median delay
    from the end of a word to its report, and correct detections at most
    ``max_correct_gap_pts`` below the model's one-clip accuracy on the same commands
    (where the recordings carry it), so that silence is never bought with deafness.
    Settings within all four are ranked by correct detections. When none is,
    ``cost`` ranks them: missed% + 3 x wrong% + ``false_alarm_weight`` x false
    alarms per hour + (delay over the limit) / 10 ms. With the default weight, four
    false alarms an hour weigh as much as missing one command in a hundred: a
    recognizer of spoken commands first has to hear them."""

    max_wrong_pct: float = 1.5
    max_false_alarms_per_hour: float = 1.5
    max_delay_ms: float = 400.0
    false_alarm_weight: float = 0.25
    max_correct_gap_pts: float = 2.0

    @staticmethod
    def _fa(s: dict) -> float:
        return s.get(SPEECH_FALSE_ALARMS, s[FALSE_ALARMS])

    def within(self, s: dict) -> bool:
        delay = s[DELAY] or 0.0
        clip = s.get("clip_accuracy_pct")
        return (s[WRONG] <= self.max_wrong_pct and self._fa(s) <= self.max_false_alarms_per_hour
                and delay <= self.max_delay_ms
                and (clip is None or s[CORRECT] >= clip - self.max_correct_gap_pts))

    def cost(self, s: dict) -> float:
        delay = s[DELAY] or 0.0
        return (s[MISSED] + 3 * s[WRONG] + self.false_alarm_weight * self._fa(s)
                + max(0.0, delay - self.max_delay_ms) / 10)

    def better(self, a: dict, b: dict | None) -> bool:
        if b is None:
            return True
        if self.within(a) != self.within(b):
            return self.within(a)
        if self.within(a):
            return (a[CORRECT], -self.cost(a)) > (b[CORRECT], -self.cost(b))
        return self.cost(a) < self.cost(b)


def calibrate(recs: list[Recording], speech: list[Recording], labels: list[str], base: StreamConfig,
              limits: Limits = Limits(), *, windows_ms: tuple[float, ...] = (0.0, 200.0, 300.0, 500.0),
              lookaheads_ms: tuple[float, ...] = (0.0, 100.0, 200.0, 300.0),
              peak_margins: tuple[float, ...] = (0.0, 0.05),
              max_words_ms: tuple[float | None, ...] = (None, 1000.0, 1200.0, 1500.0),
              thresholds: tuple[float, ...] = CALIBRATION_THRESHOLDS, max_spread: float = 0.15, passes: int = 2,
              progress: bool = True) -> tuple[StreamConfig, dict]:
    """Choose the averaging window, look-ahead, peak margin, the isolation check
    (``max_word_ms``; tried only when every recording has voice activity) and a
    global threshold, then each command's own threshold (at most ``max_spread`` from the global one: a
    validation stream holds a few dozen of each command, too few to trust more), on
    validation recordings: the most correct detections within ``limits``; where
    nothing is within them, the lowest ``limits.cost``. Returns (config, its scores)."""
    best_cfg, best = None, None
    if any(r.vad_probs is None for r in [*recs, *speech]):  # without voice activity: no isolation check
        if base.max_word_ms is not None:
            raise ValueError("the rule checks isolation, but a recording has no voice activity")
        max_words_ms = (None,)
    grid = [(w, la, m, mw, t) for w in windows_ms for la in lookaheads_ms for m in peak_margins
            for mw in max_words_ms for t in thresholds]
    for w, la, m, mw, t in tqdm(grid, desc="calibrating the rule", unit="setting", disable=not progress):
        cfg = dataclasses.replace(base, average_window_ms=w, lookahead_ms=la, peak_margin=m,
                                  max_word_ms=mw).with_threshold(t)
        s = evaluate(recs, speech, labels, cfg)
        if limits.better(s, best):
            best_cfg, best = cfg, s
    commands = [c for c in labels if c in COMMANDS10] or [c for c in labels if c != UNKNOWN]
    for _ in range(passes):
        changed = False
        for c in tqdm(commands, desc="per-command thresholds", unit="command", disable=not progress):
            for t in thresholds:
                if t == best_cfg.threshold_of(c) or abs(t - best_cfg.threshold) > max_spread + 1e-9:
                    continue
                cfg = dataclasses.replace(best_cfg, thresholds={**best_cfg.thresholds, c: t})
                s = evaluate(recs, speech, labels, cfg)
                if limits.better(s, best):
                    best_cfg, best, changed = cfg, s, True
        if not changed:
            break
    return best_cfg, best


def record_files(streamer: StreamingRecognizer, audio: list, labels: list, speech_audio: list = (),
                 progress: bool = True) -> tuple[list[Recording], list[Recording]]:
    """Run the model once over every recording: (command recordings, one per ``audio`` with
    its ground-truth CSV in ``labels``; command-free ``speech_audio`` ones)."""
    if len(labels) != len(audio):
        raise DataError(f"give one labels file per audio file ({len(audio)} audio, {len(labels)} labels)")
    recs, speech = [], []
    for path, truth in [*zip(audio, labels), *((p, None) for p in speech_audio)]:
        wave, _ = read_audio(path, streamer.sample_rate)
        rec, _ = record(streamer, wave, read_truth(truth) if truth is not None else [], progress=progress)
        (recs if truth is not None else speech).append(rec)
    return recs, speech


def calibrate_file(checkpoint, audio: list, labels: list, speech_audio: list, out, limits: Limits = Limits(), *,
                   device: str = "cpu", runtime: str = "auto", overrides: dict | None = None,
                   progress: bool = True) -> dict:
    """Calibrate ``checkpoint``'s streaming rule on validation recordings and write the
    checkpoint with it to ``out`` (a .pt file). Returns the rule, its validation scores and
    the rule it replaced with its scores."""
    if Path(out).suffix != ".pt":
        raise DataError(f"{out}: calibration is written into a .pt checkpoint")
    rec = Recognizer.from_checkpoint(checkpoint, device=device, runtime=runtime)
    if not rec.checkpoint.state_dict:
        raise DataError(f"{checkpoint}: calibration is written into a .pt checkpoint, not an exported model")
    streamer = StreamingRecognizer(rec, **(overrides or {}))
    recs, speech = record_files(streamer, audio, labels, speech_audio, progress=progress)
    cfg, scores = calibrate(recs, speech, rec.labels, streamer.config, limits, progress=progress)
    before = evaluate(recs, speech, rec.labels, streamer.config)
    ckpt = rec.checkpoint  # the model that was heard (default: the one for streams)
    ckpt.streaming = cfg
    ckpt.metrics["stream_calibration"] = {k: v for k, v in scores.items() if not isinstance(v, (dict, list))}
    save_checkpoint(ckpt, out)
    return {"rule": dataclasses.asdict(cfg), "validation": scores,
            "before": {"rule": dataclasses.asdict(streamer.config), "validation": before}}
