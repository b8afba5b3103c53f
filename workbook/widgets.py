"""ipywidgets panels. Each widget calls a plain function that a normal cell and the tests call too."""
from __future__ import annotations


import numpy as np

from helpers import History, TrainingDiverged
from workbook.checks import _check_f
from workbook.experiments import (_check_data, train_preview)
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


def live_plot(output, title: str = "preview", metrics=("loss", "acc")):
    """A train() callback that redraws the curves inside an ipywidgets.Output.

    output: an ipywidgets.Output (anything usable as a context manager with clear_output).
    Returns callback(history) -> None; each call replaces the plot (clear_output(wait=True)),
    so the panel updates live while training runs.
    """
    from IPython.display import clear_output, display

    def callback(hist: History) -> None:
        plt = _plt()
        with output:
            clear_output(wait=True)
            fig = plot_history(hist, metrics=metrics,
                               title=f"{title} (update {hist.t[-1] if hist.t else 0})")
            display(fig)
            plt.close(fig)
    return callback


def preview_panel(data: dict, n_train: int = 2000, n_test: int = 1000):
    """The notebook's ipywidgets panel: architecture and training settings plus a Train button.

    data: dict from load_dataset() (see train_preview). Clicking Train calls train_preview
    with the widget values on the first ``n_train``/``n_test`` images and redraws the curves
    live via live_plot. Returns the panel (an ipywidgets.VBox); ``panel.button`` is the
    Train button and ``panel.output`` the plot area, so a test can ``panel.button.click()``.
    """
    import ipywidgets as W
    from IPython.display import display
    _check_data(data)
    style = {"description_width": "90px"}
    log = dict(base=10, readout_format=".1e", continuous_update=False, style=style)
    w = {
        "f": W.Dropdown(options=[2, 4, 8, 16], value=4, description="f", style=style),
        "nf": W.IntSlider(value=10, min=1, max=160, description="nf", style=style),
        "nh": W.IntSlider(value=50, min=5, max=400, step=5, description="nh", style=style),
        "eta_min": W.FloatLogSlider(value=1e-5, min=-7, max=-2, description="eta_min", **log),
        "eta_max": W.FloatLogSlider(value=1e-1, min=-4, max=0, description="eta_max", **log),
        "step": W.IntSlider(value=100, min=10, max=1000, step=10, description="step",
                            style=style),
        "n_cycles": W.IntSlider(value=1, min=1, max=4, description="cycles", style=style),
        "increasing": W.Checkbox(value=False, description="doubling cycles"),
        "lam": W.FloatLogSlider(value=3e-3, min=-6, max=-1, description="lam", **log),
        "batch_size": W.Dropdown(options=[25, 50, 100, 200, 500], value=100,
                                 description="batch size", style=style),
    }
    button = W.Button(description="Train", button_style="primary", icon="play")
    status = W.HTML(value=f"<i>trains on {n_train} images of {data.get('name', '')}</i>")
    output = W.Output()

    def on_click(_):
        button.disabled = True
        kw = {k: v.value for k, v in w.items()}
        status.value = "<b>training...</b>"
        try:
            _, hist = train_preview(data, n_train=n_train, n_test=n_test,
                                    callback=live_plot(output, "preview"), **kw)
            status.value = (f"final test acc {100 * hist.final_test_acc:.2f}% after "
                            f"{hist.updates_done} updates; train {hist.time_train:.1f} s, "
                            f"eval {hist.time_eval:.1f} s - {data_label(hist.data)}")
        except (ValueError, TrainingDiverged) as e:
            status.value = f"<b>not trained:</b> {e}"
            with output:
                print(e)
        finally:
            button.disabled = False

    button.on_click(on_click)
    keys = list(w)
    panel = W.VBox([W.HBox([W.VBox([w[k] for k in keys[:5]]), W.VBox([w[k] for k in keys[5:]])]),
                    W.HBox([button, status]), output])
    panel.button, panel.output, panel.controls, panel.status = button, output, w, status
    return panel
