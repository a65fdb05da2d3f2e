"""Data sets and feature schemas. Image sets: ``load_mnist``, ``load_digits``. Tabular sets and
their schemas live in ``schema.py`` and one module per data set (adult, german, bank, compas)."""
from certprune.datasets.digits import load_digits
from certprune.datasets.mnist import load_mnist
from certprune.datasets.paths import data_root
from certprune.datasets.schema import Feature, TabularSchema
from certprune.datasets.tabular import TABULAR_NAMES, TabularData, get_schema, load_tabular

__all__ = ["load_digits", "load_mnist", "data_root", "Feature", "TabularSchema", "TabularData",
           "TABULAR_NAMES", "get_schema", "load_tabular"]
