"""Training, export and evaluation of the clothing classifier.

``data`` and ``metrics`` need only numpy and Pillow; ``network``, ``train`` and
``export`` need torch; ``evaluate`` needs ONNX Runtime. The ``*_cli`` modules keep
their heavy imports inside ``run``.
"""
