"""``clothing convert``: bring your own Keras model (``.h5``, ``.keras`` or a SavedModel).

Needs the ``convert`` extra (TensorFlow's CPU build and tf2onnx); nothing else in
the project imports this package's TensorFlow side.
"""
