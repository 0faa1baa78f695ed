"""The Gradio demo: UI wiring only. Recognition goes through Recognizer and
StreamingRecognizer; everything about the model comes from its checkpoint."""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # fully offline: no analytics calls

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio.data_classes import FileData  # noqa: E402  (module level: gr.api reads the type hints)
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from .audio import pad_or_trim, read_audio  # noqa: E402
from .checkpoint import DEFAULT_CHECKPOINT, DEFAULT_EMBEDDER, WORDS_FILE  # noqa: E402
from .config import RUNTIME_HELP, RUNTIMES  # noqa: E402
from .errors import SpeechLSTMError  # noqa: E402
from .enroll import MAX_CLIPS, MIN_CLIPS, Embedder, WordSpotter, enroll, remove  # noqa: E402
from .infer import Prediction, Recognizer  # noqa: E402
from .stream import StreamingRecognizer  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
MAX_UPLOAD = "20mb"
MAX_SECONDS = 120.0
# The Clip tab's queue slots. The model itself runs one request at a time (a lock shared with
# the unqueued /predict): on 2 cores the other core serves HTTP; 2 at once gave no more
# throughput and doubled the handler's time (benchmarks/app_load.py).
MODEL_CONCURRENCY = 1
_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts: nothing fetched from a CDN
# Browsers clean a microphone for calls by default (echo cancellation, noise suppression, automatic
# gain): the gain pumps to full scale and clips, and the suppressor gates the pauses to digital
# silence. The model was trained on recordings as they were made, so the page asks for the raw
# microphone (Gradio's recorder asks getUserMedia for plain {audio: true}).
RAW_MICROPHONE = """<script>
(() => {
  const media = navigator.mediaDevices;
  if (!media || !media.getUserMedia) return;
  const ask = media.getUserMedia.bind(media);
  media.getUserMedia = (constraints) => {
    if (constraints && constraints.audio) {
      const audio = typeof constraints.audio === "object" ? constraints.audio : {};
      constraints = {...constraints, audio: {echoCancellation: false, noiseSuppression: false,
                                             autoGainControl: false, ...audio}};
    }
    return ask(constraints);
  };
})();
</script>"""
log = logging.getLogger(__name__)


def _rejected(message: str, path: str | None = None) -> gr.Error:
    """A user's bad input: a message in the page and one line in the server's log, no
    traceback (Gradio prints one for every other exception: those are our bugs)."""
    log.warning("rejected %s: %s", Path(path).name if path else "request", message)
    return gr.Error(message, print_exception=False)


def model_card(rec: Recognizer) -> str:
    ck = rec.checkpoint
    m = ck.metrics
    rows = [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in m.items()]
    n_params = rec.parameters
    card = [
        "## Model", "",
        f"Bidirectional LSTM on MFCCs, {n_params:,} parameters, {len(rec.labels)} labels: {', '.join(f'`{x}`' for x in rec.labels)}.", "",
        "| metric | value |", "|---|---|", *rows, "",
        f"**Runtime** (Clip and Live tabs): {rec.runtime}", "",
        f"**Features**: `{ck.features}`", "", f"**Model**: `{ck.model}`", "",
        f"**Provenance**: `{ck.provenance}`", "",
    ]
    readme = DEFAULT_CHECKPOINT.parent / "README.md"
    if ck.source == DEFAULT_CHECKPOINT and readme.is_file():  # the shipped model's card
        card += ["---", readme.read_text()]
    return "\n".join(card)


def build_demo(rec: Recognizer, max_seconds: float = MAX_SECONDS, words_dir: str | os.PathLike | None = None,
               embedder: Embedder | None = None) -> gr.Blocks:
    """``rec`` answers the Clip tab's clips and the Live tab's stream. With ``words_dir`` and
    ``embedder``, a "Your words" tab enrols words there, and both tabs hear them."""
    model_lock = threading.Lock()
    words_version = [0]  # bumped at each enrolment: live sessions rebuild their streamer

    from .plots import clip_figure

    def read(path: str | None) -> np.ndarray:
        """An uploaded file -> mono samples at the model rate, or a message for the page."""
        if not path:
            raise _rejected("No audio: record or upload a clip first.")
        try:
            seconds = sf.info(path).duration
        except RuntimeError:
            seconds = 0.0  # not a libsndfile format: read_audio decides
        if seconds > max_seconds:
            raise _rejected(f"The clip is {seconds:.0f} s long; the limit is {max_seconds:.0f} s.", path)
        try:
            return read_audio(path, rec.sample_rate)[0]
        except SpeechLSTMError as e:
            raise _rejected(f"Could not use this audio: {str(e).replace(str(path), Path(path).name)}", path) from None

    def recognize(path: str | None, top_k: int) -> tuple[Prediction, float]:
        """Read and recognize one upload -> (prediction, milliseconds it took)."""
        with model_lock:  # one request at a time (the queue does this for the Clip tab, not for /predict)
            t0 = time.perf_counter()  # the wait for the lock is not the request's work
            pred = rec.predict(read(path), rec.sample_rate, top_k=max(1, min(int(top_k), len(rec.labels))))
            return pred, 1000 * (time.perf_counter() - t0)

    def predict(audio: FileData, top_k: int = 5) -> dict:
        """Recognize one clip (any format, rate or channel count, up to the length limit):
        the ranked labels with probabilities, where the deciding 1 s window starts, the
        clip's length and the server's time in ms, as JSON. No figure: the lean path."""
        pred, ms = recognize(audio.get("path") if isinstance(audio, dict) else audio, top_k)
        return {**pred.to_dict(), "server_ms": round(ms, 2)}

    def classify(path: str | None):
        """The Clip tab's first step: the labels at once; the figure follows."""
        pred, ms = recognize(path, 5)
        end_s = (pred.offset_ms + 1000 * rec.clip_samples / rec.sample_rate) / 1000
        info = (f"**{pred.label}** ({100 * pred.score:.1f}%): window {pred.offset_ms / 1000:.2f}-{end_s:.2f} s "
                f"of {pred.duration_ms / 1000:.2f} s; read + inference {ms:.1f} ms on {rec.device}")
        return {label: p for label, p in pred.top}, info, {"offset_ms": pred.offset_ms, "label": pred.label}

    def figure(path: str | None, decided: dict | None):
        """The second step, after the labels are on screen: waveform and MFCC of the
        deciding window. It reads the file again (about a millisecond) rather than
        keeping every session's samples in memory."""
        if not path or not decided:
            return None
        samples = read(path)
        start = round(decided["offset_ms"] * rec.sample_rate / 1000)
        clip = pad_or_trim(samples[start : start + rec.clip_samples], rec.clip_samples)
        return clip_figure(samples, rec.sample_rate, start, rec.clip_samples, rec.mfcc(clip), decided["label"])

    def live(chunk, state):
        if chunk is None:
            return gr.skip(), gr.skip(), state
        rate, data = chunk
        if state is None or state["rate"] != rate or state["words"] != words_version[0]:
            with model_lock:
                streamer = StreamingRecognizer(rec, input_rate=rate)
            state = {"rate": rate, "streamer": streamer, "log": (state or {}).get("log", []),
                     "words": words_version[0]}
        streamer: StreamingRecognizer = state["streamer"]
        try:
            for d in streamer.push(data):
                state["log"].insert(0, [f"{d.time_ms / 1000:7.2f} s", d.label, f"{d.score:.2f}"])
            del state["log"][50:]  # the session state stays bounded however long the stream runs
        except SpeechLSTMError as e:
            raise _rejected(f"Bad audio chunk: {e}") from None
        current = streamer.last_probs
        top = {rec.labels[i]: float(current[i]) for i in np.argsort(-current)[:5]} if current is not None else {}
        return top, state["log"], state

    with gr.Blocks(title="speechlstm") as demo:
        gr.Markdown("# speechlstm\nSay one of: " + ", ".join(f"**{x}**" for x in rec.labels if not x.startswith("_")))
        with gr.Tabs():  # one tab bar: nothing but tabs inside it (an element between two tabs splits the bar)
            with gr.Tab("Clip"):
                with gr.Row():
                    with gr.Column():
                        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio clip",
                                         elem_id="clip-audio")
                        button = gr.Button("Recognize", variant="primary", elem_id="recognize")
                        examples = sorted(EXAMPLES_DIR.glob("*.wav"))
                        if examples:
                            gr.Examples([[str(p)] for p in examples], inputs=[audio], label="Real example clips")
                    with gr.Column():
                        label = gr.Label(num_top_classes=5, label="Prediction", elem_id="prediction")
                        info = gr.Markdown(elem_id="info")
                        plot = gr.Plot(label="Waveform and MFCC (shaded: the 1 s window that decided)")
                decided = gr.State(None)
                for trigger, name in ((button.click, "classify"), (audio.stop_recording, False)):
                    trigger(classify, inputs=audio, outputs=[label, info, decided], api_name=name,
                            concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY,
                            ).then(figure, inputs=[audio, decided], outputs=plot,
                                   api_name="figure" if name else False, api_visibility="undocumented",
                                   concurrency_id="figure", concurrency_limit=1, show_progress="minimal")
            with gr.Tab("Live"):
                gr.Markdown("Press record and speak commands; detections appear as they fire.")
                with gr.Row():
                    mic = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Microphone",
                                   elem_id="live-mic")
                    current = gr.Label(num_top_classes=5, label="Current", elem_id="live-current")
                log = gr.Dataframe(headers=["time", "command", "confidence"], label="Detections",
                                   interactive=False, elem_id="live-detections")
                state = gr.State(None)
                mic.stream(live, inputs=[mic, state], outputs=[current, log, state], stream_every=0.5,
                           time_limit=600, api_name=False)
            if words_dir is not None and embedder is not None:
                _words_tab(rec, Path(words_dir), embedder, model_lock, words_version)
            with gr.Tab("Model"):
                gr.Markdown(model_card(rec))
        gr.api(predict, api_name="predict", queue=False)  # an endpoint, not a tab: outside the tab bar
    return demo


def hear_words(folder: str | os.PathLike, embedder: Embedder, rec: Recognizer) -> None:
    """The recognizer hears the words enrolled in ``folder`` (none: its own labels only)."""
    rec.set_words(WordSpotter.load(folder, embedder) if (Path(folder) / WORDS_FILE).is_file() else None)


def _enrolled(rec: Recognizer) -> str:
    names = rec.words.names if rec.words is not None else []
    return ("Your words: " + ", ".join(f"**{n}**" for n in names)) if names else "No words of your own yet."


def _words_tab(rec: Recognizer, folder: Path, embedder: Embedder, model_lock: threading.Lock,
               words_version: list[int]) -> None:
    """The "Your words" tab: record a word a few times, enrol it, and the Clip and Live tabs hear it."""

    def use_words() -> None:  # under model_lock
        hear_words(folder, embedder, rec)
        words_version[0] += 1

    def take(path: str | None, takes: list[str]):
        if not path:
            return gr.skip(), takes
        takes = [*takes, path][-MAX_CLIPS:]
        return f"{len(takes)} recording{'s' if len(takes) > 1 else ''}; " + (
            "record another, or press Enrol." if len(takes) >= MIN_CLIPS else
            f"record {MIN_CLIPS - len(takes)} more (5 in all is a good number)."), takes

    def add(word: str, takes: list[str]):
        if not (word or "").strip():
            raise _rejected("Type the word you are recording first.")
        with model_lock:
            t0 = time.perf_counter()
            try:
                entry = enroll(word, takes, folder, embedder=embedder, classifier=rec)
            except SpeechLSTMError as e:
                raise _rejected(str(e)) from None
            use_words()
        return (f"Enrolled **{entry.name}** from {len(takes)} recordings in {time.perf_counter() - t0:.1f} s: "
                "say it in the Clip or Live tab."), [], _enrolled(rec)

    def drop(word: str):
        with model_lock:
            try:
                remove(word, folder)
            except SpeechLSTMError as e:
                raise _rejected(str(e)) from None
            use_words()
        return f"Removed **{word.strip().lower()}**.", _enrolled(rec)

    with gr.Tab("Your words"):
        gr.Markdown(f"Add a word of your own: type it, record it {MIN_CLIPS}-{MAX_CLIPS} times (5 is good), "
                    f"one word a recording, then press Enrol. Words are kept in `{folder}`.")
        with gr.Row():
            with gr.Column():
                word = gr.Textbox(label="Word", placeholder="e.g. lights", elem_id="word-name")
                take_audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="One recording",
                                      elem_id="word-audio")
                count = gr.Markdown(f"0 recordings; record {MIN_CLIPS} or more.", elem_id="word-count")
                with gr.Row():
                    enrol_button = gr.Button("Enrol", variant="primary", elem_id="word-enroll")
                    remove_button = gr.Button("Remove this word", elem_id="word-remove")
            with gr.Column():
                result = gr.Markdown(elem_id="word-result")
                listing = gr.Markdown(_enrolled(rec), elem_id="word-list")
        takes = gr.State([])
        for trigger in (take_audio.stop_recording, take_audio.upload):
            trigger(take, inputs=[take_audio, takes], outputs=[count, takes], api_name=False)
        enrol_button.click(add, inputs=[word, takes], outputs=[result, takes, listing], api_name="enroll",
                           concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY
                           ).then(lambda: "0 recordings.", outputs=count, api_name=False)
        remove_button.click(drop, inputs=word, outputs=[result, listing], api_name="remove_word",
                            concurrency_id="model", concurrency_limit=MODEL_CONCURRENCY)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="speechlstm web demo")
    p.add_argument("--checkpoint", help="checkpoint file for every tab (default: the shipped commands12 model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also serve through a public Gradio link")
    p.add_argument("--device", default="auto")
    p.add_argument("--runtime", choices=RUNTIMES, default="auto", help=RUNTIME_HELP)
    p.add_argument("--words", default="words", help="your words folder: the Your words tab enrols into it, "
                   "and both tabs hear its words (default: words/; speechlstm enroll writes the same)")
    p.add_argument("--embedder", help=f"embedding model for your words (default: {DEFAULT_EMBEDDER.name})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)  # batch-1 requests gain nothing from a second thread; HTTP work takes that core
    rec = Recognizer.from_checkpoint(args.checkpoint, device=args.device, runtime=args.runtime)
    embedder = Embedder.from_checkpoint(args.embedder)
    launch(rec, args.host, args.port, share=args.share, words_dir=args.words, embedder=embedder)


def launch(rec: Recognizer, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           block: bool = True, words_dir: str | os.PathLike | None = None,
           embedder: Embedder | None = None) -> gr.Blocks:
    """Serve the demo; with ``block=False`` return at once (tests, notebooks). ``words_dir`` and
    ``embedder``: the Your words tab, and the words already enrolled there heard at once."""
    if words_dir is not None and embedder is not None:
        hear_words(words_dir, embedder, rec)
    demo = build_demo(rec, words_dir=words_dir, embedder=embedder)
    demo.queue(default_concurrency_limit=4, max_size=256)
    demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                theme=gr.themes.Default(font=_FONTS, font_mono=["ui-monospace", "monospace"]),
                footer_links=["api"], allowed_paths=[str(EXAMPLES_DIR)], prevent_thread_lock=not block, head=RAW_MICROPHONE,
                quiet=not block)
    return demo
