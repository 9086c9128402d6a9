"""The notebook UI (ipywidgets + plotly). It holds no curation logic: every action calls `workbench`.

    from widgets import Workbench
    Workbench(collection)     # filters with live counts, map and gallery side by side; who each rule
                              # removes per cluster, compare with a preset, labels, recipe, export
"""
from .workbench import Workbench

__all__ = ["Workbench"]
