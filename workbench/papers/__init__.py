"""The papers' algorithms: FLYT sampling and mixing, CLIP-DPO preference pairs, the LAION-400M audit."""
