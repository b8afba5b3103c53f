"""Tests for workbook.calibration: the label-smoothed loss on scores, reliability bins and ECE."""
import numpy as np
import pytest
import helpers as H
from _common import rel_err, scores
from workbook import calibration, data, synthetic


def log_softmax_cols(S):
    """Written out here, independently of helpers: log p for every column of S (K, n)."""
    out = np.empty_like(S, dtype=np.float64)
    for i in range(S.shape[1]):
        s = S[:, i] - S[:, i].max()
        out[:, i] = s - np.log(np.sum(np.exp(s)))
    return out


@pytest.fixture(scope="module")
def tiny_data():
    X, y = synthetic.make_synthetic(120, seed=4)
    Xt, yt = synthetic.make_synthetic(60, seed=4, stream=1)
    Xn, Xtn, _, _ = data.normalise(X, Xt)
    return {"X_train": Xn, "y_train": y, "X_test": Xtn, "y_test": yt, "name": "tiny synthetic"}


def test_ls_targets_follow_equation_23():
    K, eps = 10, 0.1
    y = np.array([3, 0, 9])
    T = calibration.ls_targets(y, K, eps)
    for i, c in enumerate(y):
        for k in range(K):
            want = 1 - eps if k == c else eps / (K - 1)
            assert abs(T[k, i] - want) < 1e-15, f"ls_targets[{k}, {i}] = {T[k, i]}, expected {want}"
    assert np.array_equal(calibration.ls_targets(y, K, 0.0), H.one_hot(y, K, np.float64)), \
        "ls_targets with eps=0 is not exactly one-hot"
    d = rel_err(H.smooth_targets(H.one_hot(y, K, np.float64), eps), T)
    assert d < 1e-15, f"smooth_targets(one_hot) and ls_targets differ by rel {d:.2e}"
    with pytest.raises(ValueError):
        calibration.ls_targets(y, K, 1.0)


def test_eps0_is_exactly_the_plain_cross_entropy():
    S, y = scores(seed=1)
    plain = -np.mean(log_softmax_cols(S)[y, np.arange(len(y))])
    got = calibration.ls_cross_entropy(S, y, 0.0)
    assert abs(got - plain) <= 1e-14 * abs(plain), f"eps=0 loss {got!r} != plain CE {plain!r}"
    P = np.exp(log_softmax_cols(S))
    G = calibration.ls_grad_scores(S, y, 0.0)
    Y = np.zeros_like(S)
    Y[y, np.arange(len(y))] = 1
    d = rel_err(G, -(Y - P) / len(y))
    assert d < 1e-13, f"eps=0 gradient differs from -(y - p)/n by rel {d:.2e}"


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_ls_loss_and_gradient_match_torch_autograd(eps):
    torch = pytest.importorskip("torch", reason="torch is the independent oracle (optional)")
    S, y = scores(K=10, n=12, seed=2)
    K, n = S.shape
    St = torch.tensor(S, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(y)
    # the spec's loss written out in torch: targets 1-eps / eps/(K-1), mean of -sum y_s log p
    Ys = torch.full((K, n), eps / (K - 1), dtype=torch.float64)
    Ys[yt, torch.arange(n)] = 1 - eps
    loss = -(Ys * torch.log_softmax(St, dim=0)).sum() / n
    loss.backward()
    d_loss = abs(calibration.ls_cross_entropy(S, y, eps) - loss.item()) / abs(loss.item())
    assert d_loss < 1e-13, f"ls_cross_entropy differs from the torch loss by rel {d_loss:.2e}"
    d_grad = rel_err(calibration.ls_grad_scores(S, y, eps), St.grad.numpy())
    assert d_grad < 1e-12, f"ls_grad_scores differs from torch autograd by rel {d_grad:.2e}"


@pytest.mark.parametrize("e", [0.05, 0.1, 0.3])
def test_torch_label_smoothing_is_the_spec_loss_with_rescaled_eps(e):
    """torch spreads e/K over all K classes (true class 1-e+e/K), the spec eps/(K-1) over the
    K-1 others; they agree for eps = e (K-1)/K."""
    torch = pytest.importorskip("torch", reason="torch is the independent oracle (optional)")
    F = torch.nn.functional
    S, y = scores(K=10, n=16, seed=3)
    K = S.shape[0]
    want = F.cross_entropy(torch.tensor(S.T), torch.tensor(y), label_smoothing=e).item()
    got = calibration.ls_cross_entropy(S, y, e * (K - 1) / K)
    assert abs(got - want) < 1e-12 * abs(want), f"torch {want!r} vs spec loss {got!r}"
    other = calibration.ls_cross_entropy(S, y, e)
    assert abs(other - want) > 1e-6, "the unscaled eps should NOT match torch's convention"


def test_optimal_margin_is_a_stationary_point():
    K, eps = 10, 0.1
    m = calibration.ls_optimal_margin(eps, K)
    assert abs(m - np.log(0.9 * 9 / 0.1)) < 1e-12, f"margin {m} != log(81)"
    S = np.zeros((K, 1))
    S[4, 0] = m
    g = calibration.ls_grad_scores(S, np.array([4]), eps)
    assert np.max(np.abs(g)) < 1e-12, f"gradient at the optimal margin is {np.max(np.abs(g)):.2e}"
    assert calibration.ls_optimal_margin(0.0, K) == np.inf


def test_network_loss_and_grads_use_the_smoothed_targets():
    """compute_loss is the spec loss on the network's scores; dL/dW2 = -(y_s - p)/n X1^T."""
    X, y = synthetic.make_synthetic(6, seed=5)
    Xn, _, _ = data.normalise(X, dtype=np.float64)
    params = H.init_params(8, 3, 7, seed=1, dtype=np.float64)
    MX = H.build_mx(H.to_images(Xn), 8)
    Y = H.one_hot(y, 10, np.float64)
    fw = H.forward(params, MX)
    for eps in (0.0, 0.1):
        loss, _ = H.compute_loss(params, MX, Y, eps=eps)
        want = calibration.ls_cross_entropy(fw["S"], y, eps)
        assert abs(loss - want) < 1e-12 * abs(want), f"eps={eps}: compute_loss {loss} vs {want}"
        gW2 = H.compute_grads(params, MX, Y, eps=eps)["W2"]
        d = rel_err(gW2, calibration.ls_grad_scores(fw["S"], y, eps) @ fw["X1"].T)
        assert d < 1e-12, f"eps={eps}: grad W2 differs from -(y_s - p)/n X1^T by rel {d:.2e}"


def test_ece_on_a_hand_computed_example():
    # K=3, 5 bins with edges 0, .2, .4, .6, .8, 1 (a bin holds (lo, hi])
    P = np.array([[0.90, 0.10, 0.30, 0.50],
                  [0.05, 0.70, 0.65, 0.30],
                  [0.05, 0.20, 0.05, 0.20]])
    y = np.array([0, 1, 0, 2])
    # confidences .9 (right), .7 (right), .65 (wrong), .5 (wrong)
    # bin (.8, 1]: conf .9, acc 1;  bin (.6, .8]: conf .675, acc .5;  bin (.4, .6]: conf .5, acc 0
    by_hand = 1 / 4 * abs(1 - 0.9) + 2 / 4 * abs(0.5 - 0.675) + 1 / 4 * abs(0 - 0.5)
    got = calibration.ece(P, y, n_bins=5)
    assert abs(got - by_hand) < 1e-12, f"ece {got} != hand-computed {by_hand}"
    r = calibration.reliability(P, y, n_bins=5)
    assert r["count"].tolist() == [0, 0, 1, 2, 1], f"bin counts {r['count'].tolist()}"
    assert abs(r["conf"][3] - 0.675) < 1e-12 and abs(r["acc"][3] - 0.5) < 1e-12, \
        f"bin 3 conf/acc {r['conf'][3]}, {r['acc'][3]}"
    assert np.isnan(r["acc"][0]) and abs(r["frac"].sum() - 1) < 1e-12


def test_ece_of_calibrated_and_overconfident_predictions():
    # 10 predictions at confidence .8 with 8 right, 10 at .6 with 6 right: perfectly calibrated
    P = np.concatenate([np.tile([[0.8], [0.2]], 10), np.tile([[0.6], [0.4]], 10)], axis=1)
    y = np.array([0] * 8 + [1] * 2 + [0] * 6 + [1] * 4)
    assert calibration.ece(P, y, 15) < 1e-12, f"calibrated example has ECE {calibration.ece(P, y, 15)}"
    # always fully confident (conf = 1.0, which must land in the last bin), 70% right
    Q = np.zeros((3, 10))
    Q[0] = 1.0
    yq = np.array([0] * 7 + [2] * 3)
    assert abs(calibration.ece(Q, yq, 10) - 0.3) < 1e-12, f"ECE {calibration.ece(Q, yq, 10)} != error rate 0.3"
    assert calibration.reliability(Q, yq, 10)["count"][-1] == 10
    with pytest.raises(ValueError, match="softmax"):
        calibration.ece(np.array([[2.0, -1.0], [0.5, 3.0]]), np.array([0, 1]))
