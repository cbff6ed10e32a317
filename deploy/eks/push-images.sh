#!/usr/bin/env bash
# Push the two images to Amazon ECR and point the EKS overlay at them.
#
#   deploy/eks/push-images.sh
#
# Safe to run again: repositories are created only when missing, pushes of an
# unchanged image upload nothing, and the overlay edit rewrites the same lines.
# Needs: aws (v2), docker, images built locally as clothing-classifier/<name>:<tag>.
# Environment: AWS_REGION (default: the AWS CLI's configured region, else eu-west-1),
# AWS_ACCOUNT_ID (default: from `aws sts get-caller-identity`), IMAGE_TAG (default 0.1.0),
# EKS_OVERLAY (the kustomization.yaml to update; default the EKS overlay's).
set -euo pipefail

readonly IMAGES=(clothing-classifier/model-server clothing-classifier/gateway)
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
overlay="${EKS_OVERLAY:-${repo_root}/deploy/k8s/overlays/eks/kustomization.yaml}"

region="${AWS_REGION:-$(aws configure get region || true)}"
region="${region:-eu-west-1}"
account="${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}"
tag="${IMAGE_TAG:-0.1.0}"
registry="${account}.dkr.ecr.${region}.amazonaws.com"

echo "registry: ${registry}"
aws ecr get-login-password --region "${region}" \
  | docker login --username AWS --password-stdin "${registry}"

for image in "${IMAGES[@]}"; do
  if ! aws ecr describe-repositories --region "${region}" \
      --repository-names "${image}" >/dev/null 2>&1; then
    echo "creating ECR repository ${image}"
    aws ecr create-repository --region "${region}" --repository-name "${image}" \
      --image-scanning-configuration scanOnPush=true >/dev/null
  fi
  docker tag "${image}:${tag}" "${registry}/${image}:${tag}"
  docker push "${registry}/${image}:${tag}"
done

# Any previous registry (or the placeholder) is replaced by this one.
sed -i.bak -E \
  -e "s#newName: [^ ]*\.dkr\.ecr\.[^ ]*\.amazonaws\.com/#newName: ${registry}/#" \
  -e "s#^(    newTag: ).*#\1${tag}#" \
  "${overlay}"
rm -f "${overlay}.bak"
echo "deploy/k8s/overlays/eks now uses ${registry} (tag ${tag})"
