"""Datasets: pairing rules for benchmark folders, and in-memory training patches."""
from derain.data.pairs import LAYOUTS, Pair, describe_layout, find_datasets, find_pairs, is_dataset, pair_folders

__all__ = ["LAYOUTS", "Pair", "describe_layout", "find_datasets", "find_pairs", "is_dataset", "pair_folders"]
