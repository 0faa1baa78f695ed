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

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .checkpoint import Checkpoint, checkpoint_meta
from .errors import SpeechLSTMError
from .runtime import META_KEY, TS_EXTRA, WithFeatures, quantize_int8

ONNX_OPSET = 18




def export_model(ckpt: Checkpoint, out: str | os.PathLike, fmt: str, int8: bool = False) -> Path:
    """Write ``ckpt`` as ONNX or TorchScript (optionally int8) to ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = checkpoint_meta(ckpt)
    meta["export"] = {"format": fmt, "int8": int8, "torch": str(torch.__version__)}
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
    with warnings.catch_warnings():
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
            logging.getLogger().setLevel(logging.ERROR)  # the quantizer's pre-processing advice
            quantize_dynamic(folded, quant, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["LSTM", "MatMul", "Gemm"], nodes_to_exclude=frontend)
            proto = onnx.load_model(str(quant))
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
