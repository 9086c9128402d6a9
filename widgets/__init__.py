"""The notebook UI (ipywidgets + plotly). It holds no curation logic: every action calls `workbench`."""
