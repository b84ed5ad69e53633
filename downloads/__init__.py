"""Fetching and preparing the released weights and the datasets."""
