"""Print a model's signatures the way ``saved_model_cli show --all`` does.

PATH may be a model.onnx file, a version directory holding one, or a base
path (its newest version is shown, or every version with --all_versions).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="model.onnx, a version dir or a base path")
    parser.add_argument(
        "--all_versions",
        action="store_true",
        help="with a base path, show every version instead of the newest",
    )


def _model_files(path: Path, all_versions: bool) -> list[tuple[int | None, Path]]:
    from clothing.serving_layout import MODEL_FILE, versions_on_disk

    if path.is_file():
        return [(None, path)]
    if (path / MODEL_FILE).is_file():
        version = int(path.name) if path.name.isdigit() else None
        return [(version, path / MODEL_FILE)]
    versions = versions_on_disk(path)
    if not versions:
        raise FileNotFoundError(f"no model.onnx in {path} nor in any <version>/ below it")
    chosen = sorted(versions, reverse=True)
    if not all_versions:
        chosen = chosen[:1]
    return [(number, versions[number] / MODEL_FILE) for number in chosen]


def render(model_path: Path) -> str:
    """The signature of one model file, in saved_model_cli's layout."""
    from clothing.model_server.backend import OnnxBackend
    from clothing.model_server.config import RuntimeConfig
    from clothing.model_server.core import DEFAULT_SIGNATURE
    from clothing.serving_layout import read_declared
    from clothing.tensors import datatype_of, dtype_name

    backend = OnnxBackend(RuntimeConfig())
    backend.load(model_path)
    signature = backend.signature()
    backend.unload()
    lines = [
        "MetaGraphDef with tag-set: 'serve' contains the following SignatureDefs:",
        "",
        f"signature_def['{DEFAULT_SIGNATURE}']:",
    ]
    for kind, specs in (("input", signature.inputs), ("output", signature.outputs)):
        lines.append(f"  The given SavedModel SignatureDef contains the following {kind}(s):")
        for spec in specs:
            dims = ", ".join("-1" if d is None else str(d) for d in spec.shape)
            shape = f"({dims},)" if len(spec.shape) == 1 else f"({dims})"
            lines += [
                f"    {kind}s['{spec.name}'] tensor_info:",
                f"        dtype: {dtype_name(datatype_of(spec.dtype))}",
                f"        shape: {shape}",
                f"        name: {spec.name}",
            ]
    lines.append(f"  Method name is: {signature.method_name}")
    info = read_declared(model_path.parent)
    if info:
        lines += ["", "Model info (metadata.json):", json.dumps(info, indent=2)]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from clothing.model_server.backend import BackendError

    try:
        files = _model_files(Path(args.path), args.all_versions)
        for version, model_path in files:
            if version is not None:
                print(f"Version {version}: {model_path}")
            print(render(model_path))
            print()
    except (FileNotFoundError, BackendError, ValueError) as error:
        print(f"clothing inspect: error: {error}", file=sys.stderr)
        return 1
    return 0
