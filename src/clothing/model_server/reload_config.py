"""What ``ModelService.HandleReloadConfigRequest`` may change: the security controls.

The request's ``ModelServerConfig`` is read by ``tf_serving_config.models_from_proto``,
as a ``--model_config_file`` is; here, before a single model changes, the result is
held to the operator's limits: the model roots (``--allowed_model_roots``) and the
model count (``--max_models``).
"""

from __future__ import annotations

from pathlib import Path

from clothing.model_server.config import ModelConfig
from clothing.model_server.errors import InvalidArgument, PermissionDenied


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
