"""Datasets, long-tailed subsets, samplers and loaders."""
