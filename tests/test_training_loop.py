"""The bookkeeping `xreid train` and `xreid adapt` share (xreid.training.loop), by hand."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from xreid.training import loop
from xreid.training.loop import Checkpoints, LossMeans, optimiser_step, refuse_changed_resume, refuse_fresh_start


def test_checkpoints_save_at_the_stop_after_each_epoch_and_on_interrupt(monkeypatch):
    saved = []
    ck = Checkpoints(lambda e, b: saved.append((e, b)), Path("run/last.pt"), minutes=10, max_batches=3, start=(1, 2))
    assert not ck.batch_done(1, 2) and not ck.batch_done(1, 3) and saved == []  # within the interval: no save
    ck.outer_done(1)
    assert saved == [(2, 0)]
    assert ck.batch_done(2, 0) and saved[-1] == (2, 1)  # the third batch run: the max_batches stop, saved
    with pytest.raises(KeyboardInterrupt, match=r"progress saved to run/last\.pt \(continue with --resume\)"):
        with ck.saved_on_interrupt():
            raise KeyboardInterrupt
    assert saved[-2:] == [(2, 1), (2, 1)]  # saved again on the interrupt
    clock = iter([0.0, 601.0, 601.0])
    monkeypatch.setattr(loop, "time", SimpleNamespace(monotonic=lambda: next(clock)))
    timed = Checkpoints(lambda e, b: saved.append((e, b)), Path("x.pt"), minutes=10)
    assert not timed.batch_done(0, 4) and saved[-1] == (0, 5)  # ten minutes passed: saved


def test_loss_means_and_the_finite_step():
    m = LossMeans()
    m.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)})
    m.add({"a": torch.tensor(2.0), "b": torch.tensor(0.0)})
    assert m.means() == {"a": 1.5, "b": 2.0} and m.postfix() == {"a": "1.500", "b": "2.000"}
    assert LossMeans().means() == {}
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    optimiser_step(opt, {"sq": (w ** 2).sum()}, "at epoch 1 batch 0")  # d/dw w^2 = 2: 1 - 0.5 * 2 = 0
    assert w.item() == 0.0
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 1 batch 1"):
        optimiser_step(opt, {"sq": w.sum() * float("nan")}, "at epoch 1 batch 1")


def test_refusals_name_the_checkpoint_and_the_way_out(tmp_path):
    ckpt = tmp_path / "last.pt"
    refuse_fresh_start(ckpt, False, "a run already exists", "choose another name")  # nothing there yet
    ckpt.write_bytes(b"")
    refuse_fresh_start(ckpt, True, "a run already exists", "choose another name")
    with pytest.raises(FileExistsError, match="last.pt: a run already exists here; pass --resume to continue it or "
                                              "choose another name"):
        refuse_fresh_start(ckpt, False, "a run already exists", "choose another name")
    refuse_changed_resume(ckpt, [], "the options differ", "resume with the same options")
    with pytest.raises(ValueError, match=r"the options differ \(lr, p\); resume with the same options"):
        refuse_changed_resume(ckpt, ["lr", "p"], "the options differ", "resume with the same options")
