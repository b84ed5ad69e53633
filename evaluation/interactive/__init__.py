"""The DAVIS-interactive benchmark without its package: the scribble robot (`robot`), the per-frame scores,
report and summary (`metrics`) and the session that drives a method through the samples (`session`)."""
