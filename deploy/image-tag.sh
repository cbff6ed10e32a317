#!/usr/bin/env bash
# Print the tag for images built from this checkout: the commit, e.g.
# 3f2c9a1b7d4e, or 3f2c9a1b7d4e-dirty-20261202164000 (UTC build time) when files
# differ from that commit, so every build of changed files gets a new tag and
# reaches nodes that already hold an older image (imagePullPolicy IfNotPresent).
# The overlays' kustomization.yaml files do not count: deploy/set-image-tag.sh
# and deploy/eks/push-images.sh write the tag there.
#
#   TAG=$(deploy/image-tag.sh)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
commit="$(git rev-parse --short=12 HEAD)"
changes="$(git status --porcelain -- . ':(exclude,glob)deploy/k8s/overlays/*/kustomization.yaml')"
if [[ -n "${changes}" ]]; then
  echo "${commit}-dirty-$(date -u +%Y%m%d%H%M%S)"
else
  echo "${commit}"
fi
