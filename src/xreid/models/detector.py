"""Person detectors with the SSD output most Open Model Zoo detectors share, in OpenVINO or ONNX Runtime.

The model takes one BGR (or RGB, ``channel_order``) 0-255 image at its own input size and gives a
``1 x 1 x N x 7`` tensor of rows ``image_id, label, confidence, x_min, y_min, x_max, y_max`` with
coordinates relative to the image (``image_id`` < 0 ends the list). ``Detector.detect`` returns the
rows at or above a confidence as an ``n x 5`` float32 array ``x0, y0, x1, y1, confidence`` in pixels
of the frame it was given, clipped to the frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xreid.models.fingerprint import fingerprint

#: the detector ``--detector`` means when none is named
DEFAULT_DETECTOR = "person-detection-retail-0013"


def ssd_rows_to_boxes(rows: np.ndarray, width: int, height: int, confidence: float,
                      label: int | None = None) -> np.ndarray:
    """SSD output rows (``... x 7``) -> ``n x 5`` [x0, y0, x1, y1, conf] in pixels of a ``width`` x
    ``height`` frame: rows before the first negative image id, confidence >= ``confidence``, of
    ``label`` when given; boxes clipped to the frame, empty ones dropped."""
    rows = np.asarray(rows, np.float32).reshape(-1, 7)
    end = np.flatnonzero(rows[:, 0] < 0)
    rows = rows[: end[0]] if len(end) else rows
    keep = rows[:, 2] >= confidence
    if label is not None:
        keep &= rows[:, 1] == label
    rows = rows[keep]
    scale = np.array([width, height, width, height], np.float32)
    boxes = np.clip(rows[:, 3:7] * scale, 0, scale)
    good = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return np.concatenate([boxes[good], rows[good, 2:3]], axis=1).astype(np.float32)


class Detector:
    """An SSD-output person detector. ``path``: an OpenVINO ``.xml`` or an ``.onnx`` file;
    ``precision``: OpenVINO's inference precision ('f32', or 'bf16' on CPUs with AVX512-BF16 / AMX:
    about a third less CPU time, slightly different boxes; ONNX Runtime always runs f32)."""

    def __init__(self, path: str | Path, channel_order: str = "bgr", label: int | None = None, threads: int | None = None,
                 precision: str = "f32"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: detector model not found")
        self.channel_order, self.label, self.precision = channel_order, label, precision
        self.name = self.path.stem
        self.fingerprint = fingerprint(self.path)
        if threads is None:  # a Ray worker's CPU allotment, else the runtime's choice
            from xreid.models.embedders import runtime_threads

            threads = runtime_threads()
        if self.path.suffix == ".onnx":
            self._load_onnx(threads)
        elif self.path.suffix == ".xml":
            self._load_openvino(threads)
        else:
            raise ValueError(f"{self.path}: unknown detector format '{self.path.suffix}' (expected .xml or .onnx)")
        if len(self.input_shape) != 4:
            raise ValueError(f"{self.path}: expected a 1 x 3 x H x W image input, got shape {self.input_shape}")
        self.height, self.width = int(self.input_shape[2]), int(self.input_shape[3])

    def _load_openvino(self, threads: int | None) -> None:
        import openvino as ov

        from xreid.models.embedders import framework_message

        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # openvino raises its own RuntimeError subclasses
            raise ValueError(f"{self.path}: cannot load OpenVINO model ({framework_message(exc)})") from None
        shape = model.inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else 1 for d in shape]
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": self.precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._run = lambda x: np.asarray(self._request.infer({0: x})[self._compiled.outputs[0]])

    def _load_onnx(self, threads: int | None) -> None:
        import onnxruntime as ort

        from xreid.models.embedders import framework_message

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: cannot load ONNX model ({framework_message(exc)})") from None
        inp = session.get_inputs()[0]
        self.input_shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        self._run = lambda x: session.run(None, {inp.name: x})[0]

    def identity(self) -> dict:
        return {"detector": self.name, "fingerprint": self.fingerprint, "input": [self.height, self.width],
                "precision": self.precision}

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 RGB frame -> 1 x 3 x h x w float32 model input."""
        import cv2

        x = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        if self.channel_order == "bgr":
            x = x[..., ::-1]
        return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)

    def detect(self, frame: np.ndarray, confidence: float = 0.5) -> np.ndarray:
        """Boxes of people in an RGB frame: ``n x 5`` [x0, y0, x1, y1, confidence] in its pixels."""
        out = self._run(self.prepare(frame))
        if out.shape[-1] != 7:
            raise ValueError(f"{self.path}: output shape {tuple(out.shape)} is not the SSD 1 x 1 x N x 7 format")
        return ssd_rows_to_boxes(out, frame.shape[1], frame.shape[0], confidence, self.label)


def resolve_detector(spec: str | Path | None) -> Path:
    """The detector file of ``spec``: a path to an .xml / .onnx file, or a short model name that
    ``xreid models get`` put in the model cache (default: person-detection-retail-0013)."""
    from xreid.models.zoo import resolve_known_model

    return resolve_known_model(str(spec or DEFAULT_DETECTOR), kind="detector")
