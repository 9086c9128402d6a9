"""Models: CLIP encoders (open_clip), detector heads, prompt embeddings, linear probes."""
