"""Files bound to a model: one record, one check that names the file and both models."""

import numpy as np
import pytest

from xreid.binding import HEAD_FIELDS, IdentityMismatch, check_binding, head_binding, record
from xreid.explain.attribute_head import AttributeHead

A = {"model": "alpha", "fingerprint": "aaaa", "preprocess": {"h": 8}, "flip": False, "backend": "torch"}


def test_one_check_names_the_file_what_differs_and_both_models():
    check_binding("x.npz", A, {**A, "backend": "openvino"})  # the backend does not decide the vectors
    with pytest.raises(IdentityMismatch) as err:
        check_binding("x.npz", A, {**A, "model": "beta", "fingerprint": "bbbb"}, remedy="refit")
    msg = str(err.value)
    assert msg.startswith("x.npz: made by another model set-up (fingerprint differ)")
    assert "alpha (fingerprint aaaa)" in msg and "beta (fingerprint bbbb)" in msg and msg.endswith("refit")
    bundled = {**A, "model": "default"}
    with pytest.raises(IdentityMismatch, match="bundled model has changed") as err:  # after an upgrade
        check_binding("case", bundled, {**bundled, "fingerprint": "bbbb"}, remedy="refit")
    assert str(err.value).endswith("refit")
    with pytest.raises(IdentityMismatch) as err:
        check_binding("x.npz", A, {**A, "fingerprint": "bbbb"})
    assert "bundled" not in str(err.value)
    with pytest.raises(IdentityMismatch, match="records no model identity"):
        check_binding("old.npz", None, A)
    check_binding("old.npz", None, A, strict=False)  # an older file without a binding is not refused then
    check_binding("h.npz", {"fingerprint": None}, A, fields=("fingerprint",), strict=False)
    with pytest.raises(ValueError, match="h.npz: fitted on another model"):
        check_binding("h.npz", {"fingerprint": "cccc"}, A, fields=("fingerprint",), strict=False,
                      what="fitted on another model")


def test_head_binding_follows_what_decides_the_probabilities():
    head = AttributeHead(["a", "b"], np.eye(2), np.zeros(2), {})
    same = AttributeHead(["a", "b"], np.eye(2), np.zeros(2), {"source": "elsewhere"})
    other = AttributeHead(["a", "b"], 2 * np.eye(2), np.zeros(2), {})
    check_binding("case", head_binding(head, "h1"), head_binding(same, "h2"), fields=HEAD_FIELDS)
    with pytest.raises(IdentityMismatch, match="head_fingerprint differ"):
        check_binding("case", head_binding(head), head_binding(other), fields=HEAD_FIELDS)


def test_record_is_the_embedders_identity():
    class Named:
        name, fingerprint = "m", "ffff"

    class WithIdentity(Named):
        def identity(self):
            return {"model": "m", "fingerprint": "ffff", "flip": True}

    assert record(Named()) == {"model": "m", "fingerprint": "ffff"}
    assert record(WithIdentity())["flip"] is True
