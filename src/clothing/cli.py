"""The ``clothing`` command: one entry point, a subcommand per tool.

Each subcommand lives in its own module that exposes ``configure(parser)`` to
declare its flags and ``run(args) -> int`` to execute. ``main`` imports only the
module of the subcommand it runs: each tier installs its own extra alone
(the model server's has no httpx, the gateway's no ONNX Runtime, neither has
torch), so importing another tier's module could fail.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence
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
        "clothing.precision.quantize_cli",
        "int8 copy of a model for CPUs, if accuracy holds",
    ),
    "fp16": ("clothing.precision.half_cli", "float16 copy of a model for GPUs, if accuracy holds"),
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


def build_parser(configured: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; only the subcommands in ``configured`` (all when None) get
    their flags, which imports their modules. The others are listed with their summary."""
    parser = argparse.ArgumentParser(
        prog="clothing",
        description="Clothing image classification: model server, gateway and tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, summary) in SUBCOMMANDS.items():
        if configured is not None and name not in configured:
            commands.add_parser(name, help=summary)
            continue
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


def requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line: its first argument that is not an option
    (the top level's only options, --help and --version, take no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    command = requested_command(arguments)
    args = build_parser(configured={command} if command else set()).parse_args(arguments)
    module = cast(Subcommand, args._module)
    try:
        return module.run(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
