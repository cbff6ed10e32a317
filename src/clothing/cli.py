"""The ``clothing`` command: one entry point, a subcommand per tool.

Each subcommand lives in its own module that exposes ``configure(parser)`` to
declare its flags and ``run(args) -> int`` to execute. Modules are imported
only to build the parser, so they keep heavy imports (ONNX Runtime, torch)
inside ``run``: the gateway's install has neither.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from clothing import __version__

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "model-server": (
        "clothing.model_server.cli",
        "serve ONNX models over TF Serving's gRPC and REST APIs",
    ),
    "inspect": ("clothing.model_server.inspect", "print a model's signatures"),
    "gateway": ("clothing.gateway.cli", "serve the HTTP gateway and web page"),
    "up": ("clothing.up", "start model server and gateway together"),
    "predict": ("clothing.predict", "classify one image URL or file through a gateway"),
    "train": ("clothing.training.train_cli", "fine-tune the classifier from pretrained weights"),
    "export": ("clothing.training.export_cli", "export a checkpoint to ONNX in the serving layout"),
    "evaluate": ("clothing.training.evaluate_cli", "measure an ONNX model on a labelled folder"),
    "quantize": (
        "clothing.training.quantize_cli",
        "int8 copy of a model for CPUs, if accuracy holds",
    ),
    "fp16": ("clothing.training.half_cli", "float16 copy of a model for GPUs, if accuracy holds"),
    "convert": (
        "clothing.convert.cli",
        "serve your own Keras model: .h5, .keras or SavedModel to ONNX",
    ),
    "bench": ("clothing.bench_cli", "benchmark the stack against its alternatives"),
    "speed": (
        "clothing.benchmarks.speed_cli",
        "images/s of two copies of a model in process, interleaved (int8 vs float32)",
    ),
}


class Subcommand(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clothing",
        description="Clothing image classification: model server, gateway and tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        module = cast(Subcommand, importlib.import_module(module_name))
        sub = commands.add_parser(
            name,
            help=summary,
            description=(module.__doc__ or summary).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.configure(sub)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = cast(Subcommand, args._module)
    try:
        return module.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
