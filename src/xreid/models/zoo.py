"""Known public models, one command away: ``xreid models get NAME`` downloads them from their
publisher (Intel's Open Model Zoo storage) into the model cache, checks each file against a pinned
sha256 and only then moves it into place.

- Atomic: a file is written as ``NAME.part`` and renamed when its hash matches; the model folder
  counts as present only when every file is there and hashes as pinned.
- Resumable: an interrupted download keeps its ``.part`` file and the next ``get`` asks the server
  for the rest (HTTP ``Range``); a server that ignores the range sends the whole file again.
- A file whose hash differs from the pin is refused by name and deleted; nothing is installed.
- ``$XREID_MODEL_BASE_URL`` replaces the publisher's base address (a mirror, or a test server on
  the loopback); files are then fetched from ``BASE/NAME/PRECISION/FILE``.

After ``get``, ``--detector NAME`` and ``--model NAME`` take the short name (``resolve_known_model``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Open Model Zoo's public storage (release 2023.0)
OMZ_BASE_URL = "https://storage.openvinotoolkit.org/repositories/open_model_zoo/2023.0/models_bin/1"
BASE_URL_ENV = "XREID_MODEL_BASE_URL"
CHUNK = 1 << 16


@dataclass(frozen=True)
class KnownModel:
    name: str
    kind: str  # 'detector', 'reid', 'attributes'
    precision: str
    files: dict[str, str]  # file name -> sha256

    def relative(self, file: str) -> str:
        return f"{self.name}/{self.precision}/{file}"

    @property
    def main_file(self) -> str:
        return f"{self.name}.xml"


def _omz(name: str, kind: str, precision: str, xml: str, bin_: str) -> KnownModel:
    return KnownModel(name, kind, precision, {f"{name}.xml": xml, f"{name}.bin": bin_})


KNOWN_MODELS: dict[str, KnownModel] = {m.name: m for m in [
    _omz("person-detection-retail-0013", "detector", "FP16",
         "2fd3f0e733d137db1f92bb8d136790a999a5d7ebf65d81dac2c4c3775d58d392",
         "56eeccbeb3f27144046edacb95b459d60f3930f54051ef5b9e5253923c07b672"),
    _omz("person-reidentification-retail-0277", "reid", "FP16",
         "82039b1bb986231c50345550e59def94e63579998e9cddbd1a312f293eb87729",
         "6bb69e09d07733cc3896b29081d2627f92db7b9aacd50f1a8c3df491cb10f1b7"),
    _omz("person-reidentification-retail-0286", "reid", "FP16",
         "cc547e622d8aeabf97938213f68171bf59ac7d01c910ceadfea984aa96e5d1b5",
         "d06beb9e2b2661d42b233f64ef623f3518fc46dc11f6b7dd53cda8962d9d1bd9"),
    _omz("person-reidentification-retail-0287", "reid", "FP32",
         "09af746c1068a3e89355e1f0226d3d6982dc1cd77634b1f70a40f1f654a94be1",
         "7f53d18d11253455e0e11646b2176cf6509cc7c97cb5376f9b91b4c41e09a06c"),
    _omz("person-reidentification-retail-0288", "reid", "FP32",
         "30f452b2ed2763f7bf429eea23f8f243ad0e7f3cdd7226db6888f1660efb3424",
         "6496b8d51741703c9e9c7f6474cb96c60de1856d7b4fd77235e48cea146066a5"),
    _omz("person-attributes-recognition-crossroad-0230", "attributes", "FP32",
         "ca288994e74a27bc1912e610460054ca79165ad68c2ec555ccda2738591c1502",
         "9a2c20aa88b282219d31b67c9252cdf844d6ce387090eb676e79e284fa3a25d8"),
]}


class ModelDownloadError(ValueError):
    """A download that failed or a file that does not match its pin (named in the message)."""


def zoo_dir() -> Path:
    from xreid.models.model_cache import model_cache_dir

    return model_cache_dir() / "zoo"


def model_path(name: str) -> Path:
    """Where ``get`` puts the main file (.xml) of the known model ``name``."""
    m = KNOWN_MODELS[name]
    return zoo_dir() / m.relative(m.main_file)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_installed(name: str) -> bool:
    m = KNOWN_MODELS[name]
    folder = model_path(name).parent
    return all((folder / f).is_file() and sha256_file(folder / f) == digest for f, digest in m.files.items())


def base_url() -> str:
    return (os.environ.get(BASE_URL_ENV) or OMZ_BASE_URL).rstrip("/")


def _fetch(url: str, part: Path, timeout: float) -> None:
    """Append the bytes of ``url`` from ``part``'s current size on (HTTP Range); restart when the
    server sends the whole file."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs we built
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: the part file is complete (the hash decides)
            return
        raise
    with response:
        mode = "ab" if have and response.status == 206 else "wb"
        with open(part, mode) as fh:
            for block in iter(lambda: response.read(CHUNK), b""):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())


def get_model(name: str, timeout: float = 60.0, progress=None) -> Path:
    """Download the known model ``name`` into the model cache (if not there already, intact) and
    return its main file. Raises KeyError for an unknown name, ModelDownloadError for a failed
    download or a hash mismatch (the file is named; nothing mismatched is kept)."""
    if name not in KNOWN_MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)}")
    m = KNOWN_MODELS[name]
    folder = model_path(name).parent
    folder.mkdir(parents=True, exist_ok=True)
    for file, digest in m.files.items():
        target = folder / file
        if target.is_file() and sha256_file(target) == digest:
            continue
        url = f"{base_url()}/{m.relative(file)}"
        part = folder / f"{file}.part"
        if progress:
            progress(f"downloading {url}")
        try:
            _fetch(url, part, timeout)
        except (urllib.error.URLError, OSError) as exc:
            raise ModelDownloadError(f"{name}: cannot download {url} ({getattr(exc, 'reason', exc)}); what arrived is "
                                     f"kept in {part} and the next `xreid models get {name}` continues it") from None
        got = sha256_file(part)
        if got != digest:
            part.unlink(missing_ok=True)
            raise ModelDownloadError(f"{name}: {file} from {url} has sha256 {got}, expected {digest}; refused "
                                     f"(deleted, nothing installed)")
        os.replace(part, target)
    return folder / m.main_file


def resolve_known_model(spec: str, kind: str | None = None) -> Path:
    """A model file path as given, or the cached file of a known model's short name (which must have
    been fetched with ``xreid models get``)."""
    if spec in KNOWN_MODELS:
        m = KNOWN_MODELS[spec]
        if kind and m.kind != kind:
            raise ValueError(f"{spec} is a {m.kind} model, not a {kind}")
        path = model_path(spec)
        if not path.is_file():
            raise FileNotFoundError(f"{spec}: not in the model cache ({path.parent}); fetch it with "
                                    f"`xreid models get {spec}`, or give the path of its .xml file")
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: model not found (give a .xml / .onnx file or a known model name: "
                                f"{', '.join(n for n, m in KNOWN_MODELS.items() if not kind or m.kind == kind)})")
    return path
