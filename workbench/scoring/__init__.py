"""Scoring: score columns per row (scorers, the compute engine, the score cache), dedup, neighbours, faiss indexes."""
