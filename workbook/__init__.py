"""The bench around the assignment's code (helpers.py): data sources, the synthetic stand-in,
the torch oracle, experiments, calibration, timing, widgets and plots. One concern per module;
import the module you need, e.g. ``from workbook import data``."""
