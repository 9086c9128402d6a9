"""Writing out: exports of a selection (LAION, webdataset, img2dataset, DataComp layouts) and embedding runs.

    from workbench.export import export, write_subset
"""
from workbench.export.exporter import FORMATS, ExportResult, export, write_subset

__all__ = ["FORMATS", "ExportResult", "export", "write_subset"]
