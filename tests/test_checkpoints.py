"""Tests for workbook/checkpoints.py: a round trip keeps everything; writes are atomic; a
checkpoint, a finished run or another file is never replaced by accident; what is loaded is
checked (parameters, config, history) with the path in every message."""
import json

import numpy as np
import pytest

import helpers as H
from workbook import checkpoints as C
from workbook import engine
from _common import tiny_cfg


def _finished(tmp_path, small_data, seed=3):
    Xn, y, Xtn, yt = small_data
    cfg = tiny_cfg(step=5, eval_every=5, batch_size=20)
    params, hist = engine.train(H.init_params(4, 4, 16, seed=seed), Xn, y, cfg, Xtn, yt,
                                data_name="synthetic")
    assert hist.complete
    return params, cfg, hist


def _unfinished(status="interrupted"):
    return H.History(t=[0], train_loss=[2.3], updates_done=9, status=status)


def test_round_trip(tmp_path, small_data):
    params, cfg, hist = _finished(tmp_path, small_data)
    path = C.save_checkpoint(tmp_path / "run", params, cfg, hist)
    assert path == tmp_path / "run.npz"
    p2, cfg2, hist2 = C.load_checkpoint(path, like=params)
    assert set(p2) == set(params)
    for k in params:
        assert p2[k].dtype == params[k].dtype and np.array_equal(p2[k], params[k]), k
    assert cfg2 == cfg and isinstance(cfg2, engine.EngineConfig)
    assert hist2.to_dict() == hist.to_dict() and hist2.complete
    # without cfg/history, float64, several filter sizes
    p64 = engine.init_params((4, 8), (3, 2), 6, dtype=np.float64, seed=1)
    q, c, h = C.load_checkpoint(C.save_checkpoint(tmp_path / "multi.npz", p64))
    assert c is None and h is None
    assert all(np.array_equal(q[k], p64[k]) and q[k].dtype == np.float64 for k in p64)
    # a plain TrainConfig is saved as its fields and read back as an EngineConfig
    plain = H.TrainConfig(step=7)
    _, c2, _ = C.load_checkpoint(C.save_checkpoint(tmp_path / "plain", p64, plain))
    assert c2.step == 7 and not c2.flip
    assert sorted(x.name for x in tmp_path.iterdir()) == ["multi.npz", "plain.npz", "run.npz"]


def test_loading_runs_no_code(tmp_path):
    """Object arrays (pickles) are never loaded."""
    bad = tmp_path / "evil.npz"
    p = H.init_params(4, 3, 8)
    np.savez(bad, meta=np.array(json.dumps({"format": 2})),
             **{"param_" + k: v for k, v in p.items()}, param_x=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="evil.npz"):
        C.load_checkpoint(bad)


def test_written_atomically(tmp_path, monkeypatch):
    params = H.init_params(4, 3, 8, seed=0)
    path = C.save_checkpoint(tmp_path / "ck.npz", params)
    before = path.read_bytes()

    def broken_savez(file, *a, **kw):     # half a file, then a failure (disk full, Ctrl-C...)
        file.write(b"PK\x03\x04 half a zip")
        raise OSError("simulated failure while writing")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="simulated"):
        C.save_checkpoint(path, H.init_params(4, 3, 8, seed=1), overwrite=True)
    with pytest.raises(OSError, match="simulated"):
        C.save_checkpoint(tmp_path / "new.npz", params)
    monkeypatch.undo()
    assert path.read_bytes() == before, "a failed save damaged the existing checkpoint"
    assert [x.name for x in tmp_path.iterdir()] == ["ck.npz"], "a failed save left files behind"


def test_names_with_dots_are_kept(tmp_path):
    p0, p1 = H.init_params(4, 3, 8, seed=0), H.init_params(4, 3, 8, seed=1)
    a = C.save_checkpoint(tmp_path / "arch5.seed0", p0)
    b = C.save_checkpoint(tmp_path / "arch5.seed1", p1)
    assert a.name == "arch5.seed0.npz" and b.name == "arch5.seed1.npz"
    assert np.array_equal(C.load_checkpoint(a)[0]["W1"], p0["W1"])
    assert np.array_equal(C.load_checkpoint(tmp_path / "arch5.seed1")[0]["W1"], p1["W1"])
    assert C.checkpoint_path("model.ckpt").name == "model.ckpt.npz"
    assert C.checkpoint_path("x.npz").name == "x.npz"


def test_the_file_is_preferred_over_a_folder_of_the_bare_name(tmp_path):
    p = H.init_params(4, 3, 8, seed=2)
    C.save_checkpoint(tmp_path / "arch5", p)
    (tmp_path / "arch5").mkdir()                       # e.g. a folder of figures
    q, _, _ = C.load_checkpoint(tmp_path / "arch5")
    assert np.array_equal(q["W1"], p["W1"])
    with pytest.raises(FileNotFoundError, match="missing"):
        C.load_checkpoint(tmp_path / "missing")


def test_an_existing_checkpoint_needs_overwrite(tmp_path, small_data):
    params, cfg, hist = _finished(tmp_path, small_data)
    path = C.save_checkpoint(tmp_path / "ck", params, cfg, hist)
    before = path.read_bytes()
    other = H.init_params(4, 4, 16, seed=9)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        C.save_checkpoint(path, other, cfg, hist)
    assert path.read_bytes() == before
    C.save_checkpoint(path, other, cfg, hist, overwrite=True)
    assert np.array_equal(C.load_checkpoint(path)[0]["W1"], other["W1"])


@pytest.mark.parametrize("status", ["interrupted", "stopped", "failed", "diverged", "running"])
def test_an_unfinished_run_never_replaces_a_checkpoint(tmp_path, small_data, status):
    params, cfg, hist = _finished(tmp_path, small_data)
    path = C.save_checkpoint(tmp_path / "best", params, cfg, hist)
    before = path.read_bytes()
    partial = H.init_params(4, 4, 16, seed=1)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=f"did not finish.*{status}"):
            C.save_checkpoint(path, partial, cfg, _unfinished(status), overwrite=overwrite)
    assert path.read_bytes() == before, "an unfinished run replaced a finished checkpoint"
    # under a new name it is saved, and its status comes back
    new = C.save_checkpoint(tmp_path / "partial", partial, cfg, _unfinished(status))
    h = C.load_checkpoint(new)[2]
    assert h.status == status and not h.complete and h.updates_done == 9


def test_a_non_checkpoint_is_never_overwritten(tmp_path):
    victim = tmp_path / "results.npz"
    victim.write_bytes(b"my thesis results, not a checkpoint")
    before = victim.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(FileExistsError):
            C.save_checkpoint(victim, H.init_params(4, 3, 8), overwrite=overwrite)
    with pytest.raises(FileExistsError, match="not a checkpoint"):
        C.save_checkpoint(victim, H.init_params(4, 3, 8), overwrite=True)
    assert victim.read_bytes() == before
    assert [x.name for x in tmp_path.iterdir()] == ["results.npz"]


def test_int32_parameters_are_refused(tmp_path):
    p = H.init_params(4, 3, 8)
    p32 = {k: v.astype(np.int32) for k, v in p.items()}
    with pytest.raises(ValueError, match="float32 or float64"):
        C.save_checkpoint(tmp_path / "ints", p32)
    assert not (tmp_path / "ints.npz").exists()
    bad = tmp_path / "ints.npz"                         # written by hand
    np.savez(bad, meta=np.array(json.dumps({"config": None, "history": None, "format": 2})),
             **{"param_" + k: v for k, v in p32.items()})
    with pytest.raises(ValueError, match=r"ints\.npz.*float32 or float64"):
        C.load_checkpoint(bad)


def _rewrite_meta(path, out, **change):
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    meta = json.loads(str(d["meta"]))
    meta.update(change)
    d["meta"] = np.array(json.dumps(meta))
    np.savez(out, **d)


@pytest.mark.parametrize("change", [
    {"config": {"step": "800"}}, {"config": {"flip": "no"}}, {"config": {"stepp": 10}},
    {"config": {"n_cycles": 0}},
    {"history": {"t": "0, 10"}}, {"history": {"updates_done": -3}}, {"history": {"what": 1}},
    {"history": [1, 2]}])
def test_damaged_config_or_history_is_refused_with_the_path(tmp_path, small_data, change):
    params, cfg, hist = _finished(tmp_path, small_data)
    good = C.save_checkpoint(tmp_path / "good", params, cfg, hist)
    bad = tmp_path / "damaged.npz"
    _rewrite_meta(good, bad, **change)
    with pytest.raises(ValueError, match=r"damaged\.npz.*config/history"):
        C.load_checkpoint(bad)


def test_wrong_or_broken_checkpoints_are_refused(tmp_path):
    params = H.init_params(4, 3, 8, seed=0)
    path = C.save_checkpoint(tmp_path / "ck.npz", params)
    with pytest.raises(ValueError, match="another architecture"):
        C.load_checkpoint(path, like=H.init_params(4, 5, 8))
    with pytest.raises(ValueError, match="other precision") as ei:
        C.load_checkpoint(path, like=H.init_params(4, 3, 8, dtype=np.float64))
    assert "another architecture" not in str(ei.value)
    with pytest.raises(ValueError, match="keys"):
        C.load_checkpoint(path, like=engine.init_params((4, 8), (3, 3), 8))
    bad = tmp_path / "bad.npz"
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d["param_W1"] = d["param_W1"][:, :-1]
    np.savez(bad, **d)
    with pytest.raises(ValueError, match=r"bad\.npz has inconsistent parameters.*W1"):
        C.load_checkpoint(bad)
    d.pop("meta")
    np.savez(bad, **d)
    with pytest.raises(ValueError, match="not a checkpoint"):
        C.load_checkpoint(bad)
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        C.load_checkpoint(bad)


def test_history_from_dict():
    h = C.history_from_dict({"t": [0, 10], "test_acc": [0.1, 0.5], "extra": 1})
    assert h.t == [0, 10] and h.final_test_acc == 0.5 and h.train_loss == []
    with pytest.raises(ValueError, match="unknown fields"):
        C.history_from_dict({"t": [0], "extra": 1}, strict=True)
    assert C.history_from_dict({"interrupted": True}).status == "interrupted"
    assert C.history_from_dict({"interrupted": False}).status == "complete"
    with pytest.raises(ValueError, match="'status' must be a str"):
        C.history_from_dict({"status": 3})
    with pytest.raises(ValueError, match="dict"):
        C.history_from_dict([("t", [0])])
    full = H.History(t=[0, 5], train_loss=[2.0, 1.0], status="complete", updates_done=5)
    assert C.history_from_dict(full.to_dict(), strict=True) == full
