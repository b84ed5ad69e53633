"""Evaluation: the evaluation datasets, the shared video loop and its outputs, DAVIS scoring."""
