"""Writing deployable models: ONNX and TorchScript files, optionally int8. The
only module that writes the exported file formats (``runtime`` reads and runs them).

Every exported model takes a raw waveform batch ``(B, clip_samples)`` float32 at
the checkpoint's sample rate (MFCC inside) and returns ``logits (B, n_labels)``
and ``mfcc (B, frames, n_mfcc)``. It carries the checkpoint's configs, labels,
metrics and provenance as JSON (ONNX metadata ``speechlstm``, TorchScript extra
file ``speechlstm.json``), so ``Recognizer.from_checkpoint("model.onnx")`` works
with nothing else. In the ONNX graph the spectrum is a two-stage FFT in matrix
products (``features.MatmulMelSpectrum``): ONNX Runtime's own STFT kernel took
about 1 ms of a 1.5 ms clip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, checkpoint_meta, content_digest
from .config import default_cache_dir
from .errors import CheckpointError, SpeechLSTMError
from .runtime import (META_KEY, TS_EXTRA, OnnxRunner, WithFeatures, check_export, load_exported, ort_session,
                      probe_waves, quantize_int8, softmax)

ONNX_OPSET = 18
EXPORT_VERSION = 1  # bump when the exported graph changes: cached exports of older versions are rebuilt
# an int8 export may move a probe clip's probabilities this far from the fp32 model's, no further
MAX_PROBE_SHIFT = 0.1

log = logging.getLogger(__name__)


def export_digest(ckpt: Checkpoint) -> str:
    """What an export's content depends on: the checkpoint, our export code, torch's exporter."""
    return f"{content_digest(ckpt)[:32]}-v{EXPORT_VERSION}-torch{torch.__version__}"



def export_model(ckpt: Checkpoint, out: str | os.PathLike, fmt: str, int8: bool = False) -> Path:
    """Write ``ckpt`` as ONNX or TorchScript (optionally int8) to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = checkpoint_meta(ckpt)
    meta["export"] = {"format": fmt, "int8": int8, "torch": str(torch.__version__), "digest": export_digest(ckpt)}
    net = WithFeatures(ckpt.build_model()).eval()
    example = torch.zeros(2, ckpt.features.clip_samples)
    if fmt == "torchscript":
        module = WithFeatures(quantize_int8(net.model)) if int8 else net
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarning; TorchScript is deprecated in 2.11 but still asked for
            traced = torch.jit.trace(module, example)
            torch.jit.save(traced, str(out), _extra_files={TS_EXTRA: json.dumps(meta)})
    elif fmt == "onnx":
        net.model.frontend.use_graph_fft()  # ONNX Runtime's STFT kernel is slow; matrix products are not
        _export_onnx(net, example, out, meta, int8)
    else:
        raise SpeechLSTMError(f"unknown export format {fmt!r}: onnx or torchscript")
    return out


def _export_onnx(net: nn.Module, example: torch.Tensor, out: Path, meta: dict, int8: bool) -> None:
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise SpeechLSTMError("ONNX export needs onnx, onnxscript and onnxruntime: "
                              "pip install 'speechlstm[onnx]'") from None
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), _quiet_logs():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(net, (example,), dynamo=True, opset_version=ONNX_OPSET,
                                    input_names=["waveform"], output_names=["logits", "mfcc"],
                                    dynamic_shapes={"wave": {0: batch}}, verbose=False)
    program.optimize()
    with tempfile.TemporaryDirectory() as tmp:
        raw, folded, quant = Path(tmp) / "raw.onnx", Path(tmp) / "folded.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(program.model_proto, str(raw))
        # Fold the exporter's weight re-packing into constants (standard ONNX ops only).
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        ort.InferenceSession(str(raw), opts, providers=["CPUExecutionProvider"])
        proto = onnx.load_model(str(folded))
        if int8:  # LSTM, MatMul and Gemm weights to int8; the MFCC's transforms stay fp32
            frontend = _ancestors(proto.graph, "mfcc")
            with _quiet_logs():  # the quantizer's pre-processing advice
                quantize_dynamic(folded, quant, weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["LSTM", "MatMul", "Gemm"], nodes_to_exclude=frontend)
            proto = onnx.load_model(str(quant))
    # the file's own logits on fixed clips, one clip a run (int8 activations are quantized
    # per run, so a clip's logits depend a little on the clips beside it) in the runtime's
    # own session: a cached copy proves with them that it is intact
    session = ort_session(proto.SerializeToString())
    probe = probe_waves(example.shape[1], meta["features"]["sample_rate"])
    meta["export"]["probe_logits"] = [session.run(["logits"], {"waveform": w[None]})[0][0].tolist() for w in probe]
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save_model(proto, str(out))


def _ancestors(graph, output: str) -> list[str]:
    """Names of the nodes that ``output`` is computed from (the front end, for "mfcc")."""
    producer = {o: n for n in graph.node for o in n.output}
    seen: dict[str, None] = {}
    todo = [output]
    while todo:
        node = producer.get(todo.pop())
        if node is not None and node.name not in seen:
            seen[node.name] = None
            todo += list(node.input)
    return list(seen)


@contextlib.contextmanager
def _quiet_logs():
    """The exporter's and quantizer's log lines (missing torchvision ops, pre-processing
    advice) are noise to a user: warnings and below are dropped while they run."""
    old = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(old)


def cached_onnx(ckpt: Checkpoint, int8: bool = True, threads: int | None = None,
                cache_dir: str | os.PathLike | None = None) -> tuple[OnnxRunner, Path, bool]:
    """``ckpt`` exported to ONNX (int8 weights by default) once, kept in the user's cache
    (``config.default_cache_dir()/runtime``) and reused by later runs. A cached file is
    used only when it was exported from this very checkpoint by this export code and
    still gives the logits it recorded; otherwise it is rebuilt. A new export must agree
    with the eager model on the probe clips. Returns (runner, path, whether it was built now)."""
    digest = export_digest(ckpt)
    folder = Path(cache_dir or default_cache_dir()) / "runtime"
    path = folder / f"{digest.split('-')[0][:20]}-{'onnx-int8' if int8 else 'onnx'}.onnx"
    if path.is_file():
        try:
            return _verified(path, digest, threads), path, False
        except CheckpointError as e:
            log.warning("rebuilding the cached export: %s", e)
    folder.mkdir(parents=True, exist_ok=True)
    name = ckpt.source.name if ckpt.source is not None else "the model"
    print(f"speechlstm: exporting {name} for ONNX Runtime{' (int8)' if int8 else ''}, once: a few seconds; "
          f"later runs load {path}", file=sys.stderr, flush=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.onnx")
    try:
        export_model(ckpt, tmp, "onnx", int8=int8)
        runner = _verified(tmp, digest, threads)
        _check_agrees(ckpt, runner)
        os.replace(tmp, path)  # atomic: a process reading the cache sees the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)
    return runner, path, True


def _verified(path: Path, digest: str, threads: int | None) -> OnnxRunner:
    meta, runner = load_exported(path, torch.device("cpu"), threads)
    check_export(meta, runner, digest)
    return runner


def _check_agrees(ckpt: Checkpoint, runner: OnnxRunner) -> None:
    """The export answers the probe clips as the eager fp32 model does (within MAX_PROBE_SHIFT)."""
    waves = probe_waves(ckpt.features.clip_samples, ckpt.features.sample_rate)
    with torch.inference_mode():
        want = torch.softmax(ckpt.build_model()(torch.from_numpy(waves)), -1).numpy()
    got = softmax(runner(waves)[0])
    shift = float(np.abs(got - want).max())
    if shift > MAX_PROBE_SHIFT:
        raise SpeechLSTMError(f"the ONNX export moves a probe clip's probabilities by {shift:.3f} "
                              f"(more than {MAX_PROBE_SHIFT})")
