"""ipywidgets panels: the convolution explorer of 01 and the training panel of 03-05."""
from __future__ import annotations



from helpers import History, TrainingDiverged
from workbook.checks import _check_f
from workbook.experiments import PREVIEW_OPTIONS, _check_data, train_preview
from workbook.plots import (_plt, data_label, plot_history)
from workbook.timing import (format_table, time_conv_methods)


def conv_shapes(f: int, nf: int, n: int) -> dict:
    """The shapes of every array of the convolution layer, as tuples.

    f: filter width (divides 32), nf: number of filters, n: number of images.
    Returns {name: shape}: X (3072, n), X_ims (32, 32, 3, n), Fs (f, f, 3, nf),
    Fs_flat (f*f*3, nf), MX (n_p, f*f*3, n), conv_outputs (32/f, 32/f, nf, n),
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), with n_p = (32/f)**2.
    """
    n_p = _check_f(f)
    if int(nf) < 1 or int(n) < 1:
        raise ValueError(f"nf and n must be positive integers; got nf={nf!r}, n={n!r}")
    f, nf, n, g, d = int(f), int(nf), int(n), 32 // int(f), int(f) * int(f) * 3
    return {"X": (3072, n), "X_ims": (32, 32, 3, n), "Fs": (f, f, 3, nf), "Fs_flat": (d, nf),
            "MX": (n_p, d, n), "conv_outputs": (g, g, nf, n), "conv_outputs_mat": (n_p, nf, n),
            "conv_flat": (n_p * nf, n)}


def conv_widget_report(f: int = 4, nf: int = 10, n: int = 20, repeats: int = 1, seed: int = 0) -> str:
    """What the notebook-01 widget shows for (f, nf): the array shapes and a timing table.

    Returns a printable string (the widget prints it; a normal cell and a test call it too).
    """
    shapes = conv_shapes(f, nf, n)
    rows = time_conv_methods(f, nf, n, repeats=repeats, seed=seed)
    lines = [f"f={f}, nf={nf}, n={n} images, n_p=(32/f)^2={(32 // f) ** 2}"]
    lines += [f"  {k:<17s}{v}" for k, v in shapes.items()]
    lines += ["", format_table(rows, ["method", "seconds", "ms_per_image", "speedup_vs_loops",
                                      "n_timed"])]
    return "\n".join(lines)


def live_plot(output, title: str = "training", metrics=("loss", "acc")):
    """A train() callback that redraws the curves inside an ipywidgets.Output.

    output: an ipywidgets.Output, whose content is replaced by one PNG of the curves at every
    call (set from the kernel, so it updates live in Jupyter and works with any matplotlib
    backend); or any context manager (drawn into with clear_output + display).
    Returns callback(history) -> None.
    """
    def callback(hist: History) -> None:
        plt = _plt()
        fig = plot_history(hist, metrics=metrics,
                           title=f"{title} (update {hist.t[-1] if hist.t else 0})")
        try:
            if hasattr(output, "outputs"):
                import base64
                import io
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
                output.outputs = ({"output_type": "display_data", "metadata": {},
                                   "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                                            "text/plain": f"<curves at update {hist.t[-1] if hist.t else 0}>"}},)
            else:
                from IPython.display import clear_output, display
                with output:
                    clear_output(wait=True)
                    display(fig)
        finally:
            plt.close(fig)
    return callback


def training_panel(data: dict, n_test: int = 1000, **defaults):
    """The training panel of chapters 03-05: every setting of a run on a widget, a Train button,
    live curves and a status line.

    data: dict from load_dataset(). Settings (see experiments.train_preview): f, nf, nh,
    n_cycles, step, increasing (doubling cycles), eta_min, eta_max, eta_decay, lam, eps, flip,
    translate, dropout, batch_size, n_train; ``defaults`` sets their starting values, e.g.
    training_panel(data, nf=40, nh=300, eps=0.1). Train calls train_preview(data, n_test=n_test,
    **settings) and redraws the curves after every evaluation; a bad setting (or a diverging run)
    shows its error in the status line instead. Returns an ipywidgets.VBox with attributes
    button, controls {name: widget}, status (HTML), output (the plot area) and result (the last
    (params, history), or None).
    """
    import ipywidgets as W
    _check_data(data)
    unknown = set(defaults) - set(PREVIEW_OPTIONS) - {"seed"}
    if unknown or "n_test" in defaults:
        raise ValueError(f"unknown panel settings {sorted(unknown | ({'n_test'} & set(defaults)))}; "
                         f"choose from {[k for k in PREVIEW_OPTIONS if k != 'n_test']}")
    v = dict(f=4, nf=10, nh=50, n_cycles=1, step=100, increasing=False, eta_min=1e-5, eta_max=0.1,
             eta_decay=1.0, lam=0.003, eps=0.0, flip=False, translate=0, dropout=0.0,
             batch_size=100, n_train=min(2000, data["X_train"].shape[1]))
    v.update(defaults)
    seed = int(v.pop("seed", 0))
    st = {"description_width": "80px"}
    lay = W.Layout(width="300px")
    log = dict(base=10, readout_format=".1e", style=st, layout=lay)
    n_max = data["X_train"].shape[1]
    w = {
        "f": W.Dropdown(options=[2, 4, 8, 16], value=v["f"], description="f", style=st, layout=lay),
        "nf": W.IntSlider(value=v["nf"], min=1, max=max(200, v["nf"]), description="nf", style=st, layout=lay),
        "nh": W.IntSlider(value=v["nh"], min=5, max=max(1000, v["nh"]), step=5, description="nh", style=st, layout=lay),
        "n_train": W.IntSlider(value=v["n_train"], min=100, max=max(n_max, 100), step=100,
                               description="n_train", style=st, layout=lay),
        "batch_size": W.Dropdown(options=sorted({25, 50, 100, 200, 500, int(v["batch_size"])}),
                                 value=int(v["batch_size"]), description="batch", style=st, layout=lay),
        "n_cycles": W.IntSlider(value=v["n_cycles"], min=1, max=6, description="cycles", style=st, layout=lay),
        "step": W.IntSlider(value=v["step"], min=10, max=max(2000, v["step"]), step=10,
                            description="step", style=st, layout=lay),
        "increasing": W.Checkbox(value=v["increasing"], description="doubling cycles", layout=lay),
        "eta_min": W.FloatLogSlider(value=v["eta_min"], min=-7, max=-2, description="eta_min", **log),
        "eta_max": W.FloatLogSlider(value=v["eta_max"], min=-4, max=0, description="eta_max", **log),
        "eta_decay": W.FloatSlider(value=v["eta_decay"], min=0.3, max=1.0, step=0.05,
                                   description="eta decay", style=st, layout=lay),
        "lam": W.FloatLogSlider(value=v["lam"], min=-6, max=-1, description="lam", **log),
        "eps": W.FloatSlider(value=v["eps"], min=0.0, max=0.5, step=0.05, description="eps (LS)",
                             style=st, layout=lay),
        "flip": W.Checkbox(value=v["flip"], description="flips", layout=lay),
        "translate": W.IntSlider(value=v["translate"], min=0, max=4, description="shift px", style=st, layout=lay),
        "dropout": W.FloatSlider(value=v["dropout"], min=0.0, max=0.8, step=0.05, description="dropout",
                                 style=st, layout=lay),
    }
    button = W.Button(description="Train", button_style="primary", icon="play")
    status = W.HTML(value=f"<i>press Train: a run on the first n_train images of {data.get('name', '')}</i>")
    output = W.Output()

    def on_click(_):
        button.disabled = True
        kw = {k: c.value for k, c in w.items()}
        status.value = "<b>training...</b>"
        try:
            panel.result = train_preview(data, n_test=n_test, seed=seed,
                                         callback=live_plot(output, "training panel"), **kw)
            hist = panel.result[1]
            status.value = (f"final test acc {100 * hist.final_test_acc:.2f}% after "
                            f"{hist.updates_done} updates; train {hist.time_train:.1f} s, "
                            f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}")
        except (ValueError, TrainingDiverged) as e:
            status.value = f"<b>not trained:</b> {e}"
        finally:
            button.disabled = False

    button.on_click(on_click)
    cols = [["f", "nf", "nh", "n_train", "batch_size"],
            ["n_cycles", "step", "increasing", "eta_min", "eta_max", "eta_decay"],
            ["lam", "eps", "flip", "translate", "dropout"]]
    panel = W.VBox([W.HBox([W.VBox([w[k] for k in c]) for c in cols]), W.HBox([button, status]),
                    output])
    panel.button, panel.output, panel.controls, panel.status, panel.result = button, output, w, status, None
    return panel
