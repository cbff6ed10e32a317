"""A small kustomize renderer for exactly the features ``deploy/k8s`` uses.

The tests must render every overlay on machines without a ``kustomize`` or
``kubectl`` binary, so this module implements: ``resources`` (files and
directories), ``components``, ``namespace``, ``labels`` (``pairs`` with
``includeSelectors: false`` and optional ``includeTemplates``), ``images``
(``newName``, ``newTag``, ``digest``) and ``patches`` (strategic merge for the
kinds we patch, or JSON 6902 with a ``target``). Anything else is refused with
``KustomizeError`` rather than silently ignored. test_kustomize.py checks this
renderer's output against ``kubectl kustomize`` (skipped without kubectl on a
developer's machine; CI installs it and fails without it).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Document = dict[str, Any]

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "images",
    "patches",
}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "APIService"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class KustomizeError(ValueError):
    """A kustomization uses a feature this renderer does not implement, or is invalid."""


def load_documents(path: Path) -> list[Document]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def render(directory: str | Path) -> list[Document]:
    """Render the kustomization in ``directory`` into a list of resources."""
    return _build(Path(directory), expected_kind="Kustomization")


def _build(directory: Path, *, expected_kind: str) -> list[Document]:
    config_path = directory / "kustomization.yaml"
    if not config_path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    config = yaml.safe_load(config_path.read_text()) or {}
    unknown = set(config) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{config_path}: unsupported fields {sorted(unknown)}")
    kind = config.get("kind", "Kustomization")
    if kind != expected_kind:
        raise KustomizeError(f"{config_path}: kind {kind}, expected {expected_kind}")
    resources: list[Document] = []
    for entry in config.get("resources", []):
        if "://" in entry:
            raise KustomizeError(f"{config_path}: remote resource {entry} cannot be rendered")
        target = (directory / entry).resolve()
        if target.is_dir():
            resources += _build(target, expected_kind="Kustomization")
        else:
            resources += load_documents(target)
    _check_unique(resources, config_path)
    return apply_transformations(resources, config, directory)


def apply_transformations(
    resources: list[Document], config: dict[str, Any], directory: Path
) -> list[Document]:
    """Apply one kustomization's components and transformers, in kustomize's order."""
    for component in config.get("components", []):
        component_dir = (directory / component).resolve()
        component_config = yaml.safe_load((component_dir / "kustomization.yaml").read_text())
        if component_config.get("kind") != "Component":
            raise KustomizeError(f"{component_dir}: not a Component")
        if "resources" in component_config:
            for entry in component_config["resources"]:
                resources += load_documents(component_dir / entry)
        resources = apply_transformations(
            resources,
            {k: v for k, v in component_config.items() if k != "resources"},
            component_dir,
        )
    for patch in config.get("patches", []):
        resources = _apply_patch(resources, patch, directory)
    if "namespace" in config:
        for doc in resources:
            if doc["kind"] not in CLUSTER_SCOPED_KINDS:
                doc.setdefault("metadata", {})["namespace"] = config["namespace"]
    for label_set in config.get("labels", []):
        _apply_labels(resources, label_set)
    for image in config.get("images", []):
        _apply_image(resources, image)
    return resources


def _check_unique(resources: list[Document], where: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for doc in resources:
        key = identity(doc)
        if key in seen:
            raise KustomizeError(f"{where}: duplicate resource {key}")
        seen.add(key)


def identity(doc: Document) -> tuple[str, str, str]:
    metadata = doc.get("metadata", {})
    return (doc["kind"], metadata.get("namespace", ""), metadata["name"])


def _apply_labels(resources: list[Document], label_set: dict[str, Any]) -> None:
    if label_set.get("includeSelectors", False):
        raise KustomizeError("labels with includeSelectors: true are not supported")
    pairs: dict[str, str] = label_set["pairs"]
    for doc in resources:
        doc.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label_set.get("includeTemplates", False) and doc["kind"] in POD_TEMPLATE_KINDS:
            template = doc["spec"]["template"].setdefault("metadata", {})
            template.setdefault("labels", {}).update(pairs)


def _apply_image(resources: list[Document], image: dict[str, str]) -> None:
    for container in _containers(resources):
        reference = container.get("image", "")
        name, tag = _split_image(reference)
        if name != image["name"]:
            continue
        new_name = image.get("newName", name)
        if "digest" in image:
            container["image"] = f"{new_name}@{image['digest']}"
        else:
            new_tag = image.get("newTag", tag)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _split_image(reference: str) -> tuple[str, str]:
    name, _, digest = reference.partition("@")
    if digest:
        return name, ""
    head, _, last = name.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
        return (f"{head}/{last}" if head else last), tag
    return name, ""


def _containers(node: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"containers", "initContainers"} and isinstance(value, list):
                found += [item for item in value if isinstance(item, dict)]
            else:
                found += _containers(value)
    elif isinstance(node, list):
        for item in node:
            found += _containers(item)
    return found


# --- patches ---------------------------------------------------------------


def _apply_patch(
    resources: list[Document], patch: dict[str, Any], directory: Path
) -> list[Document]:
    if "path" in patch:
        text = (directory / patch["path"]).read_text()
    elif "patch" in patch:
        text = patch["patch"]
    else:
        raise KustomizeError(f"{directory}: patch without path or patch")
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(documents) == 1 and isinstance(documents[0], list):
        if "target" not in patch:
            raise KustomizeError(f"{directory}: a JSON 6902 patch needs a target")
        matches = [doc for doc in resources if _matches(doc, patch["target"])]
        if not matches:
            raise KustomizeError(f"{directory}: patch target {patch['target']} matches nothing")
        for doc in matches:
            apply_json6902(doc, documents[0])
        return resources
    for patch_doc in documents:
        key = (patch_doc["kind"], patch_doc["metadata"]["name"])
        matches = [doc for doc in resources if (doc["kind"], doc["metadata"]["name"]) == key]
        if len(matches) != 1:
            raise KustomizeError(f"{directory}: patch for {key} matches {len(matches)} resources")
        merged = strategic_merge(matches[0], patch_doc, ())
        matches[0].clear()
        matches[0].update(merged)
    return resources


def _matches(doc: Document, target: dict[str, str]) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    metadata = doc.get("metadata", {})
    checks = {
        "group": group,
        "version": version,
        "kind": doc["kind"],
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
    }
    unknown = set(target) - set(checks)
    if unknown:
        raise KustomizeError(f"unsupported patch target fields {sorted(unknown)}")
    return all(checks[field] == value for field, value in target.items())


def _merge_keys(path: tuple[str, ...]) -> tuple[str, ...]:
    """The strategic-merge keys of the list at ``path`` (empty: the list is replaced)."""
    field = path[-1]
    if field in {"containers", "initContainers", "env", "volumes", "imagePullSecrets"}:
        return ("name",)
    if field == "volumeMounts":
        return ("mountPath",)
    if field == "topologySpreadConstraints":
        return ("topologyKey",)
    if field == "ports":
        # kustomize matches ports on number and protocol; an item without both
        # silently matches nothing there, so it is an error here.
        in_container = "containers" in path or "initContainers" in path
        return ("containerPort" if in_container else "port", "protocol")
    return ()


def strategic_merge(base: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        result = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = strategic_merge(result[key], value, (*path, key))
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(base, list) and isinstance(patch, list) and path:
        keys = _merge_keys(path)
        if not keys:
            return copy.deepcopy(patch)
        merged = copy.deepcopy(base)
        added = []  # kustomize puts items the base lacks before the base's own
        for item in patch:
            missing = [key for key in keys if key not in item]
            if missing:
                raise KustomizeError(f"patch item in {'.'.join(path)} lacks merge keys {missing}")
            position = next(
                (
                    index
                    for index, existing in enumerate(merged)
                    if all(existing.get(key) == item[key] for key in keys)
                ),
                None,
            )
            if position is None:
                added.append(copy.deepcopy(item))
            else:
                merged[position] = strategic_merge(merged[position], item, path)
        return added + merged
    return copy.deepcopy(patch)


def apply_json6902(doc: Document, operations: list[dict[str, Any]]) -> None:
    """Apply ``add``, ``replace`` and ``remove`` operations (RFC 6902) in place."""
    for operation in operations:
        op = operation["op"]
        if op not in {"add", "replace", "remove"}:
            raise KustomizeError(f"unsupported JSON patch operation {op}")
        tokens = [
            token.replace("~1", "/").replace("~0", "~")
            for token in operation["path"].lstrip("/").split("/")
        ]
        parent: Any = doc
        for token in tokens[:-1]:
            parent = parent[int(token)] if isinstance(parent, list) else parent[token]
        last = tokens[-1]
        if isinstance(parent, list):
            if op == "add":
                index = len(parent) if last == "-" else int(last)
                parent.insert(index, copy.deepcopy(operation["value"]))
            elif op == "replace":
                parent[int(last)] = copy.deepcopy(operation["value"])
            else:
                del parent[int(last)]
        elif op == "remove":
            del parent[last]
        else:
            if op == "replace" and last not in parent:
                raise KustomizeError(f"replace of missing path {operation['path']}")
            parent[last] = copy.deepcopy(operation["value"])
