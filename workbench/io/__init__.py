"""Reading: shard layouts, memory-mapped arrays, the Collection, validation, the write protocol and verification, images."""
