"""Curation: recipes (declarative rules), selections with a removal reason per row, live counts, the notebook's workspace."""
