"""Offline dataset tools behind ``fcc data``: converters (TFRecords, ImageNet-LT / iNat18 lists, class
folders, path rewriting, long-tailed subsets) and the TFRecord reader. A training run never imports them.
"""
