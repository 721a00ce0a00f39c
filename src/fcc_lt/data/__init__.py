"""Data a run uses: CIFAR (download, long-tailed subsets), JSON-annotated and class-folder image datasets,
decoding, whole-batch augmentation, the loaders (on the device, or decoding workers), the class statistics
of a training set, and extra training images. ``data/tools`` holds the offline converters.

Imports: config, util.
"""
