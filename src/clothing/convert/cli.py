"""Convert a Keras model (.h5, .keras) or a TensorFlow SavedModel to a served ONNX model.

Writes MODEL_DIR/VERSION/ with model.onnx, classes.txt and metadata.json: the
layout `clothing model-server` serves and the gateway reads. The model keeps
its own input and output names (a SavedModel: its serving_default signature's
keys; a Keras file: its input and output layer names), so a TF Serving client
that sends `input_8` and reads `outputs['dense_7']` works unchanged.

--preprocessing says how the client scaled pixels for the original model:
xception (x/127.5 - 1), imagenet ((x/255 - mean)/std) or none. The gateway
applies it to a float input. --serving-input uint8 instead puts the scaling in
the graph, which then takes uint8 pixels (requests 4x smaller). --softmax adds
a Softmax for a model that ends in logits.

Before anything is written, ONNX Runtime's output is compared with Keras's on
the photos in --check-data (random pixels without it); a difference above 1e-4
exits 1 and writes nothing. Refusals (a model with several inputs or outputs,
an input that is not [batch, height, width, 3], a file that is not a model)
exit 2. Needs the `convert` extra: pip install -c requirements/lock.txt '.[convert]'
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clothing.preprocessing import PREPROCESSINGS
from clothing.version_flags import add_version_arguments

if TYPE_CHECKING:
    from clothing.convert.convert import Result


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="Keras .h5 or .keras file, or a SavedModel folder")
    add_version_arguments(
        parser,
        model_dir=None,
        model_dir_help="model base path to write into (its name becomes the model's name)",
    )
    parser.add_argument(
        "--classes",
        required=True,
        help="class names in output order: a file with one per line, or a comma-separated list",
    )
    parser.add_argument(
        "--preprocessing",
        choices=PREPROCESSINGS,
        required=True,
        help="how pixels were scaled for this model (the notes' Xception: xception)",
    )
    parser.add_argument(
        "--serving-input",
        choices=("float32", "uint8"),
        default="float32",
        help="float32 keeps the model's own input; uint8 takes pixels and scales them inside",
    )
    parser.add_argument(
        "--softmax",
        action="store_true",
        help="add a Softmax after the output (for a model that ends in logits)",
    )
    parser.add_argument(
        "--image-size",
        type=_size,
        default=None,
        metavar="HxW",
        help="input height and width, for a model whose input size is not fixed",
    )
    parser.add_argument(
        "--check-data",
        type=Path,
        default=None,
        help="folder of photos (searched recursively) to compare ONNX Runtime with Keras on"
        " (default: random pixels)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        result = _convert(args)
    except ModuleNotFoundError as error:
        print(
            f"error: {error.name} is not installed; clothing convert needs the convert extra:"
            " pip install -c requirements/lock.txt '.[convert]'",
            file=sys.stderr,
        )
        return 2
    except ValueError as error:  # every refusal: not a model, wrong shape, occupied version
        print(f"error: {error}", file=sys.stderr)
        return int(getattr(error, "exit_code", 2))
    spec = result.metadata["input"]
    print(f"wrote {result.directory}")
    print(
        f"input {spec['name']!r} {spec['dtype']}[-1, {spec['height']}, {spec['width']}, 3]"
        f" (client preprocessing: {spec['preprocessing']}),"
        f" output {result.metadata['output']['name']!r}"
    )
    print(f"ONNX Runtime vs Keras max abs difference: {result.parity:.2e} ({result.checked_on})")
    if not result.metadata["conversion"]["ends_in_softmax"]:
        print("note: the model ends in logits; --softmax makes it answer probabilities")
    return 0


def _convert(args: argparse.Namespace) -> Result:
    from clothing.convert.convert import Options, convert

    options = Options(
        source=args.model,
        model_dir=args.model_dir,
        classes=read_classes(args.classes),
        preprocessing=args.preprocessing,
        version=args.version,
        serving_input=args.serving_input,
        softmax=args.softmax,
        image_size=args.image_size,
        check_data=args.check_data,
        overwrite=args.overwrite,
    )
    return convert(options)


def read_classes(value: str) -> tuple[str, ...]:
    """One name per line from a file, or a comma-separated list."""
    path = Path(value)
    text = path.read_text() if path.is_file() else value.replace(",", "\n")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise ValueError(f"--classes {value!r} names no classes")
    if len(set(names)) != len(names):
        raise ValueError("--classes names a class twice")
    return names


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    try:
        size = (int(height), int(width or height))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HxW (e.g. 299x299) or N") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return size
