#!/usr/bin/env bash
# Point a kustomize overlay at images tagged TAG: rewrites the newTag of both
# project images in OVERLAY/kustomization.yaml (what `kustomize edit set image`
# does, for machines with only kubectl).
#
#   deploy/set-image-tag.sh deploy/k8s/overlays/kind "$(deploy/image-tag.sh)"
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 OVERLAY_DIR TAG" >&2
  exit 2
fi
overlay="$1/kustomization.yaml"
tag="$2"
# Docker's rule for a tag: at most 128 of [A-Za-z0-9_.-], not starting with . or -.
if [[ ! "${tag}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "$0: '${tag}' is not a valid image tag" >&2
  exit 2
fi
if [[ ! -f "${overlay}" ]]; then
  echo "$0: no ${overlay}" >&2
  exit 2
fi
sed -i.bak -E "s#^(    newTag: ).*#\1${tag}#" "${overlay}"
rm -f "${overlay}.bak"
echo "${overlay}: images tagged ${tag}"
