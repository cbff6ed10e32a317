"""The tiny labelled image set of the training tests, for training in a fresh virtualenv."""

from tests.training.conftest import tiny_dataset

__all__ = ["tiny_dataset"]
