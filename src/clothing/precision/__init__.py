"""Reduced-precision copies of a trained model: float16 for GPUs, int8 for CPUs.

Each copy is published only when its accuracy on labelled photos holds (``copies``).
"""
