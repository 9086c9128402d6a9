"""The notebook UI (ipywidgets + plotly). It holds no curation logic: every action calls `workbench`.

    from widgets import Workbench
    Workbench(collection)     # map, filters with live counts, gallery, labels, recipe, export
"""
from .workbench import Workbench

__all__ = ["Workbench"]
