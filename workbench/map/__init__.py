"""The map: UMAP projection of the embeddings and k-means clusters with caption-word labels."""
