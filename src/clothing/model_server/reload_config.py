"""``ModelService.HandleReloadConfigRequest``'s config as the models to serve.

TF Serving sends the same ``ModelServerConfig`` its ``--model_config_file``
holds, as a protobuf: a ``model_config_list`` of names, base paths, version
policies and version labels. Anything this server cannot honour is refused with
INVALID_ARGUMENT before a single model changes.
"""

from __future__ import annotations

from pathlib import Path

from clothing.model_server.config import ModelConfig, VersionPolicy
from clothing.model_server.errors import InvalidArgument, PermissionDenied
from clothing.proto.tensorflow_serving.config import model_server_config_pb2
from clothing.proto.tensorflow_serving.sources.storage_path import (
    file_system_storage_path_source_pb2 as storage_pb2,
)

Policy = storage_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy


def models_from_proto(
    config: model_server_config_pb2.ModelServerConfig,
) -> tuple[ModelConfig, ...]:
    """The models ``config`` lists; InvalidArgument says what is wrong with it."""
    if config.WhichOneof("config") != "model_config_list":
        raise InvalidArgument("only a model_config_list is supported (custom_model_config is not)")
    entries = config.model_config_list.config
    if not entries:
        raise InvalidArgument("the model_config_list names no model")
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"model names repeat: {names}")
    try:
        return tuple(
            ModelConfig(
                name=entry.name,
                base_path=Path(entry.base_path),
                policy=_policy(entry.model_version_policy),
                labels=dict(entry.version_labels),
            )
            for entry in entries
        )
    except ValueError as error:
        raise InvalidArgument(str(error)) from None


def check_allowed(
    models: tuple[ModelConfig, ...], *, roots: tuple[Path, ...], max_models: int
) -> None:
    """Refuse a list over ``max_models`` or loading from outside ``roots`` (resolved)."""
    if len(models) > max_models:
        raise InvalidArgument(
            f"the model_config_list names {len(models)} models, over the limit of "
            f"{max_models} (--max_models)"
        )
    for model in models:
        path = model.base_path.resolve()
        if not any(path.is_relative_to(root) for root in roots):
            raise PermissionDenied(
                f"model {model.name}: base_path is outside the allowed model roots "
                "(--allowed_model_roots)"
            )


def _policy(proto: Policy) -> VersionPolicy:
    choice = proto.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=frozenset(proto.specific.versions))
    if choice == "latest":
        return VersionPolicy("latest", num_versions=proto.latest.num_versions or 1)
    return VersionPolicy()
