"""Fetching and preparing the released weights and the datasets (used by the download commands)."""
