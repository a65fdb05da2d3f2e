"""Data sets and feature schemas. Image sets: ``load_mnist``, ``load_digits``. Tabular sets and
their schemas live in ``schema.py`` and one module per data set (adult, german, bank, compas)."""
from certprune.datasets.digits import load_digits
from certprune.datasets.mnist import load_mnist
from certprune.datasets.paths import data_root

__all__ = ["load_digits", "load_mnist", "data_root"]
