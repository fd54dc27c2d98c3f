"""Models that embed images: the xreid networks, black-box ONNX / OpenVINO models, loading by
spec with preprocessing and fingerprint (``loading``), per-camera statistics and centring
(``camera_norm``, ``camera_centring``), export and the compiled-model cache."""
