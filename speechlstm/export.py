"""Deployable models: int8 dynamic quantization, ONNX and TorchScript export,
and the runners the Recognizer uses for each. The only module that knows the
exported file formats.

Every exported model takes a raw waveform batch ``(B, clip_samples)`` float32 at
the checkpoint's sample rate (MFCC inside) and returns ``logits (B, n_labels)``
and ``mfcc (B, frames, n_mfcc)``. It carries the checkpoint's configs, labels,
metrics and provenance as JSON (ONNX metadata ``speechlstm``, TorchScript extra
file ``speechlstm.json``), so ``Recognizer.from_checkpoint("model.onnx")`` works
with nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, checkpoint_from_dict, checkpoint_meta
from .errors import CheckpointError, SpeechLSTMError
from .model import KeywordBiLSTM

META_KEY = "speechlstm"
TS_EXTRA = "speechlstm.json"
ONNX_OPSET = 18


class Runner(Protocol):
    """waves (B, S) float32 -> (logits (B, n_labels), mfcc (B, T, n_mfcc)) as numpy."""

    kind: str

    def __call__(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class WithFeatures(nn.Module):
    """The model with its features as a second output: what gets exported."""

    def __init__(self, model: KeywordBiLSTM):
        super().__init__()
        self.model = model

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.model.features(wave)  # (B, T, n_mfcc)
        return self.model.classify(feats), feats  # (B, n_labels), (B, T, n_mfcc)


def quantize_int8(model: KeywordBiLSTM) -> nn.Module:
    """Dynamic int8 quantization of the LSTM and Linear layers (weights int8,
    activations quantized per batch at run time). CPU only; MFCC and conv stay fp32."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao's eager API: still the one for LSTMs
        return torch.ao.quantization.quantize_dynamic(model.cpu().eval(), {nn.LSTM, nn.Linear},
                                                      dtype=torch.qint8)


class TorchRunner:
    """Eager (fp32 or int8) or TorchScript module."""

    def __init__(self, module: nn.Module, device: torch.device, kind: str):
        self.module, self.device, self.kind = module.to(device).eval(), device, kind

    @torch.inference_mode()
    def __call__(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, feats = self.module(torch.as_tensor(waves, dtype=torch.float32).to(self.device))
        return logits.float().cpu().numpy(), feats.float().cpu().numpy()


class OnnxRunner:
    def __init__(self, path: Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise SpeechLSTMError("running an ONNX model needs onnxruntime: "
                                  "pip install 'speechlstm[onnx]'") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: onnxruntime cannot load it ({str(e).splitlines()[0]})") from None
        self.kind = "onnx"

    def __call__(self, waves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, feats = self.session.run(["logits", "mfcc"],
                                         {"waveform": np.ascontiguousarray(waves, dtype=np.float32)})
        return logits, feats


# --------------------------------------------------------------------------- writing


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
        if int8:  # LSTM, MatMul and Gemm weights to int8; the MFCC's filterbank and DCT stay fp32
            frontend = [n.name for n in proto.graph.node if any(i.startswith("model.frontend") for i in n.input)]
            logging.getLogger().setLevel(logging.ERROR)  # the quantizer's pre-processing advice
            quantize_dynamic(folded, quant, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["LSTM", "MatMul", "Gemm"], nodes_to_exclude=frontend)
            proto = onnx.load_model(str(quant))
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save_model(proto, str(out))


# --------------------------------------------------------------------------- reading


def exported_kind(path: Path) -> str | None:
    """"onnx", "torchscript" or None (a plain checkpoint), from the file's content."""
    if path.suffix == ".onnx":
        return "onnx"
    try:
        with zipfile.ZipFile(path) as z:
            if any(n.endswith(f"extra/{TS_EXTRA}") for n in z.namelist()):
                return "torchscript"
    except (zipfile.BadZipFile, OSError):
        pass
    return None


def load_exported(path: str | os.PathLike, device: torch.device,
                  threads: int | None = None) -> tuple[Checkpoint, Runner]:
    path = Path(path)
    kind = exported_kind(path)
    if kind == "onnx":
        runner = OnnxRunner(path, threads)
        raw = runner.session.get_modelmeta().custom_metadata_map.get(META_KEY)
    elif kind == "torchscript":
        files = {TS_EXTRA: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
        except RuntimeError as e:
            raise CheckpointError(f"{path}: not a loadable TorchScript model ({str(e).splitlines()[0]})") from None
        runner, raw = TorchRunner(module, device, "torchscript"), files[TS_EXTRA]
    else:
        raise CheckpointError(f"{path}: not an exported speechlstm model")
    if not raw:
        raise CheckpointError(f"{path}: exported model lacks its '{META_KEY}' metadata")
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable metadata ({e})") from None
    ckpt = checkpoint_from_dict(meta, path, weights=False)
    ckpt.provenance["export"] = meta.get("export", {})
    return ckpt, runner
