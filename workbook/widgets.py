"""ipywidgets panels: the convolution explorer of 01 and the training panel of 03-05.

The training panel's logic (exact settings, the estimate, the run on a worker thread that Stop
ends) is workbook/panel.py; this module only lays out the widgets and wires them to it.
"""
from __future__ import annotations

import functools
import html

from helpers import check_f
from workbook import panel as P

EXPLORER_NF_MAX = 160     # 01's explorer times the loop convolution: above this it takes long


def conv_shapes(f: int, nf: int, n: int) -> dict:
    """The shapes of every array of the convolution layer, as tuples.

    f: filter width (divides 32), nf: number of filters, n: number of images.
    Returns {name: shape}: X (3072, n), X_ims (32, 32, 3, n), Fs (f, f, 3, nf),
    Fs_flat (f*f*3, nf), MX (n_p, f*f*3, n), conv_outputs (32/f, 32/f, nf, n),
    conv_outputs_mat (n_p, nf, n), conv_flat (n_p*nf, n), with n_p = (32/f)**2.
    """
    n_p = check_f(f)
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
    from workbook.timing import format_table, time_conv_methods   # only the explorer times
    shapes = conv_shapes(f, nf, n)
    rows = time_conv_methods(f, nf, n, repeats=repeats, seed=seed)
    lines = [f"f={f}, nf={nf}, n={n} images, n_p=(32/f)^2={(32 // f) ** 2}"]
    lines += [f"  {k:<17s}{v}" for k, v in shapes.items()]
    lines += ["", format_table(rows, ["method", "seconds", "ms_per_image", "speedup_vs_loops",
                                      "n_timed"])]
    return "\n".join(lines)


def explorer_report(f: int, nf, n: int = 20, nf_max: int = EXPLORER_NF_MAX) -> str:
    """01's explorer: conv_widget_report for (f, nf), saying so when it changes or refuses nf.

    nf: an int or the text of a field ('40'). Above ``nf_max`` it is clamped to nf_max with a
    first line that says so; below 1 or not a whole number it is refused with a message (and
    nothing is timed).
    """
    if isinstance(nf, str) and nf.strip().lstrip("+-").isdigit():
        nf = int(nf.strip())
    if isinstance(nf, bool) or not isinstance(nf, int):
        return f"nf={nf!r} refused: nf must be a whole number from 1 to {nf_max}"
    if nf < 1:
        return f"nf={nf} refused: nf must be at least 1 (at most {nf_max} here)"
    note = ""
    if nf > nf_max:
        note = (f"nf={nf} is above this explorer's limit of {nf_max} (the loop version would "
                f"take long): clamped, showing nf={nf_max}\n")
        nf = nf_max
    return note + conv_widget_report(f, nf, n=n, repeats=1)


@functools.cache
def _text_field_class():
    """ipywidgets.Text that also takes a number (panel.controls["lam"].value = 0.0025 shows
    '0.0025'); the text is checked at Train, so 19.9 in an int field is refused there."""
    import ipywidgets as W
    import traitlets

    class NumberOrText(traitlets.Unicode):
        def validate(self, obj, value):
            return super().validate(obj, value if isinstance(value, str)
                                    else P.format_value(value))

    class SettingText(W.Text):
        value = NumberOrText("", help="the setting's text").tag(sync=True)
    return SettingText


def _row(label: str, *children, width: str = "200px"):
    import ipywidgets as W
    return W.HBox([W.Label(label, layout=W.Layout(width="115px")), *children],
                  layout=W.Layout(width=width))


def training_panel(data: dict, n_test: int = 1000, **defaults):
    """The training panel of chapters 03-05: every setting of a run in a field, Train and Stop,
    the run's size and expected time, live progress and curves.

    data: dict from load_dataset(). Settings (workbook/panel.py SETTINGS): f, nf, nh, n_train,
    batch_size, n_cycles, step, increasing (doubling cycles), eta_min, eta_max, eta_decay, lam,
    eps, flip, translate, dropout, seed; ``defaults`` sets their starting values exactly, e.g.
    training_panel(data, nf=40, nh=300, lam=0.0025). A wrong type or value raises ValueError
    here (the setting's name and the value in the message).

    Train checks the fields (a refused one: the message in the status, the old curves hidden),
    asks for a second click (or the "allow long runs" box) when the run is estimated over 5
    minutes, then trains on a worker thread: the kernel stays free, Stop ends the run before its
    next update. Returns an ipywidgets.VBox with attributes button, stop_button, allow_long,
    controls {name: widget}, estimate_line, status, progress, settings_table, curves (Image),
    curves_note, run (the last panel.TrainingRun) and result (panel.RunResult of the last run
    that trained, stopped runs included: .params, .history, .label, .settings; or None), and
    the methods settings() (the checked values of the fields) and wait(timeout).
    """
    import ipywidgets as W
    P.check_data(data)
    n_max = int(data["X_train"].shape[1])
    if "n_test" in defaults:
        raise ValueError("n_test is an argument of training_panel, not a setting")
    given = P.check_settings(defaults, partial=True)
    v = dict(P.DEFAULTS, n_train=min(P.DEFAULTS["n_train"], n_max))
    v.update(given)
    P.check_settings(v, n_available=n_max)
    P.stop_all()                   # the run of a panel this cell drew before would train unseen
    wide = W.Layout(width="110px")
    w = {}
    for name, s in P.SETTINGS.items():
        if name == "f":
            w[name] = W.Dropdown(options=list(P.FILTER_SIZES), value=v[name], layout=wide)
        elif s.kind is bool:
            w[name] = W.Checkbox(value=v[name], indent=False, layout=wide)
        else:
            w[name] = _text_field_class()(value=P.format_value(v[name]),
                                          continuous_update=False, layout=wide)
        w[name].add_class(f"wb-panel-{name}")
    button = W.Button(description="Train", button_style="primary", icon="play")
    stop = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
    allow = W.Checkbox(value=False, description="allow long runs (over 5 min)", indent=False)
    for x, c in ((button, "train"), (stop, "stop"), (allow, "allow-long")):
        x.add_class(f"wb-panel-{c}")
    est = W.HTML(value="")
    status = W.HTML(value=f"<i>press Train: a run on the first n_train images of "
                          f"{html.escape(str(data.get('name', '')))}</i>")
    bar = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="300px"))
    table = W.HTML(value="")
    curves = W.Image(format="png", layout=W.Layout(display="none", max_width="760px"))
    note = W.HTML(value="")
    for x, c in ((est, "estimate"), (status, "status"), (bar, "progress"), (table, "settings"),
                 (curves, "curves"), (note, "curves-note")):
        x.add_class(f"wb-panel-{c}")
    cols = [["f", "nf", "nh", "n_train", "batch_size", "seed"],
            ["n_cycles", "step", "increasing", "eta_min", "eta_max", "eta_decay"],
            ["lam", "eps", "flip", "translate", "dropout"]]
    grid = W.HBox([W.VBox([_row(P.SETTINGS[k].label, w[k], width="245px") for k in c])
                   for c in cols])
    box = W.VBox([grid, W.HBox([button, stop, allow]), est, W.HBox([bar, status]), table,
                  curves, note])
    box.add_class("wb-training-panel")
    state = {"confirm": None}

    def settings() -> dict:
        """The checked values of the fields (ValueError for a refused one)."""
        raw = {k: (P.parse_setting(k, c.value) if isinstance(c, W.Text) else c.value)
               for k, c in w.items()}
        return P.check_settings(raw, n_available=n_max)

    def show_estimate(_=None) -> dict | None:
        if box.run is not None and box.run.running:
            est.value = "<i>estimate: after this run ends</i>"
            return None
        try:
            e = P.estimate(data, settings(), n_test)
        except Exception as ex:                       # noqa: BLE001 - shown, never raised
            est.value = f"<b>refused setting:</b> {html.escape(str(ex))}"
            return None
        long = (" <b>- over 5 minutes: press Train twice or tick 'allow long runs'</b>"
                if e["long"] else "")
        est.value = f"estimate: {html.escape(e['text'])}{long}"
        return e

    def hide_curves(text: str) -> None:
        curves.layout.display = "none"
        note.value = text

    def on_progress(text: str, k: int, T: int) -> None:
        bar.max, bar.value = max(T, 1), min(k, T)
        status.value = f"<b>training:</b> {html.escape(text)}"

    def on_curves(png: bytes, hist) -> None:
        curves.value = png
        curves.layout.display = ""
        note.value = ""

    def on_done(run) -> None:
        try:
            r = run.result
            if r is not None:
                box.result = r
                bar.value = min(r.history.updates_done, bar.max)
                took = P.fmt_time((run.ended or 0) - (run.t0 or 0))
                acc = (f"; test acc at the last evaluation {100 * r.history.test_acc[-1]:.2f}%"
                       if r.history.test_acc and not r.final else "")
                extra = (f" (not final: Stop pressed {run.ended - run.stop_asked:.1f} s before "
                         "it ended)" if r.history.status == "stopped" and run.stop_asked else "")
                kind = "done" if r.final else "ended early"
                status.value = (f"<b>{kind}: {html.escape(r.label)}</b>{extra}{acc}; took {took}"
                                f" - {html.escape(r.data)}")
                if len(r.history.t) < 2:
                    hide_curves(f"<i>no curves: {html.escape(r.label)} before the second "
                                "evaluation</i>")
            if run.error is not None and r is None:
                status.value = (f"<b>failed:</b> {html.escape(type(run.error).__name__)}: "
                                f"{html.escape(str(run.error))}")
            elif run.error is not None and r.history.status == "failed":
                status.value = f"<b>failed:</b> {html.escape(r.label)}"
        finally:
            button.disabled, stop.disabled = False, True

    def on_train(_=None) -> None:
        if box.run is not None and box.run.running:
            return
        button.disabled = True
        try:
            try:
                s = settings()
            except ValueError as ex:
                status.value = f"<b>not trained:</b> {html.escape(str(ex))}"
                hide_curves("<i>curves cleared: the settings were refused</i>")
                table.value = ""
                return
            e = show_estimate()
            key = tuple(sorted(s.items()))
            if e is not None and e["long"] and not allow.value and state["confirm"] != key:
                state["confirm"] = key
                status.value = (f"<b>not started: estimated {P.fmt_time(e['seconds'])}, over 5 "
                                "minutes.</b> Press Train again to start it anyway, or tick "
                                "'allow long runs'.")
                return
            state["confirm"] = None
            table.value = ("<small><code>" + html.escape(P.settings_text(s))
                           + "</code></small>")
            hide_curves("<i>curves from the second evaluation on (every "
                        f"{P.make_config(s).eval_period} updates)</i>")
            run = P.TrainingRun(data, s, n_test, on_progress=on_progress, on_curves=on_curves,
                                on_done=on_done)
            bar.max, bar.value = max(run.T, 1), 0
            status.value = f"<b>training:</b> {html.escape(run.progress('starting'))}"
            box.run = run
            stop.disabled = False
            run.start()
        except Exception as ex:                       # noqa: BLE001 - the panel stays usable
            status.value = (f"<b>failed:</b> {html.escape(type(ex).__name__)}: "
                            f"{html.escape(str(ex))}")
            stop.disabled = True
        finally:
            if box.run is None or not box.run.running:
                button.disabled = False

    def on_stop(_=None) -> None:
        if box.run is not None and box.run.running:
            box.run.stop()
            stop.disabled = True
            status.value = f"<b>stopping:</b> {html.escape(box.run.progress())}"

    def wait(timeout: float | None = None) -> bool:
        """Block until the current run (if any) has ended; False on timeout."""
        return box.run is None or box.run.wait(timeout)

    button.on_click(on_train)
    stop.on_click(on_stop)
    for c in w.values():
        c.observe(show_estimate, names="value")
    box.button, box.stop_button, box.allow_long, box.controls = button, stop, allow, w
    box.estimate_line, box.status, box.progress, box.settings_table = est, status, bar, table
    box.curves, box.curves_note, box.run, box.result = curves, note, None, None
    box.settings, box.wait, box.train, box.stop = settings, wait, on_train, on_stop
    show_estimate()
    return box
