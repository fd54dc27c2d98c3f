"""Models that embed images: the xreid networks, black-box ONNX / OpenVINO models, loading by
spec with preprocessing and fingerprint (``loading``), export and the compiled-model cache."""
