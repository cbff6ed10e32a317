"""The tiny labelled set of the training tests, for the copies made from small models."""

from tests.training.conftest import tiny_dataset

__all__ = ["tiny_dataset"]
