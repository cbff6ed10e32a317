#!/usr/bin/env bash
# Build both images for EKS's nodes, push them to Amazon ECR and point the EKS
# overlay at them.
#
#   deploy/eks/push-images.sh
#
# The images are built here with `docker buildx build --platform linux/amd64`
# (the node group's x86 instances), whatever this machine's architecture: an
# image built natively on an ARM laptop would not start on them. They are tagged
# by commit (deploy/image-tag.sh), so a new build never hides behind a tag that
# nodes already hold.
#
# Repositories have immutable tags (a pushed tag always means the same image) and
# a lifecycle policy (deploy/eks/ecr-lifecycle-policy.json). Images carry OCI labels
# with the commit and the repository they were built from.
#
# Safe to run again: repositories are created only when missing, a tag already in
# the repository is not built or pushed again, and the overlay edit rewrites the
# same lines.
# Needs: aws (v2), docker with buildx, run from a git checkout.
# Environment: AWS_REGION (default: the AWS CLI's configured region, else eu-west-1),
# AWS_ACCOUNT_ID (default: from `aws sts get-caller-identity`), IMAGE_TAG (default:
# deploy/image-tag.sh), PLATFORMS (default linux/amd64; linux/amd64,linux/arm64 builds
# both, for mixed node groups, and needs a buildx builder that can, e.g. one made by
# `docker buildx create --use`), EKS_OVERLAY (the kustomization.yaml to update;
# default the EKS overlay's).
set -euo pipefail

readonly IMAGES=(clothing-classifier/model-server clothing-classifier/gateway)
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
overlay="${EKS_OVERLAY:-${repo_root}/deploy/k8s/overlays/eks/kustomization.yaml}"

region="${AWS_REGION:-$(aws configure get region || true)}"
region="${region:-eu-west-1}"
account="${AWS_ACCOUNT_ID:-$(aws sts get-caller-identity --query Account --output text)}"
tag="${IMAGE_TAG:-$("${repo_root}/deploy/image-tag.sh")}"
platforms="${PLATFORMS:-linux/amd64}"
registry="${account}.dkr.ecr.${region}.amazonaws.com"
revision="$(git -C "${repo_root}" rev-parse HEAD 2>/dev/null || echo unknown)"
# The remote's URL without any user or token in it.
source_url="$(git -C "${repo_root}" config --get remote.origin.url 2>/dev/null || echo unknown)"
source_url="$(sed -E 's#//[^/@]*@#//#' <<<"${source_url}")"
lifecycle="file://${repo_root}/deploy/eks/ecr-lifecycle-policy.json"

echo "registry: ${registry}, tag: ${tag}, platforms: ${platforms}"
aws ecr get-login-password --region "${region}" \
  | docker login --username AWS --password-stdin "${registry}"

for image in "${IMAGES[@]}"; do
  if ! aws ecr describe-repositories --region "${region}" \
      --repository-names "${image}" >/dev/null 2>&1; then
    echo "creating ECR repository ${image}"
    aws ecr create-repository --region "${region}" --repository-name "${image}" \
      --image-tag-mutability IMMUTABLE \
      --image-scanning-configuration scanOnPush=true >/dev/null
  fi
  # Also for repositories made before these settings: both calls are idempotent.
  aws ecr put-image-tag-mutability --region "${region}" --repository-name "${image}" \
    --image-tag-mutability IMMUTABLE >/dev/null
  aws ecr put-lifecycle-policy --region "${region}" --repository-name "${image}" \
    --lifecycle-policy-text "${lifecycle}" >/dev/null
  if aws ecr describe-images --region "${region}" --repository-name "${image}" \
      --image-ids "imageTag=${tag}" >/dev/null 2>&1; then
    echo "${image}:${tag} is already in the registry (tags are immutable): not pushed again"
    continue
  fi
  docker buildx build --platform "${platforms}" \
    -f "${repo_root}/deploy/docker/${image#clothing-classifier/}.Dockerfile" \
    --build-arg "REVISION=${revision}" --build-arg "SOURCE=${source_url}" \
    -t "${registry}/${image}:${tag}" --push "${repo_root}"
done

# Any previous registry (or the placeholder) is replaced by this one.
sed -i.bak -E "s#newName: [^ ]*\.dkr\.ecr\.[^ ]*\.amazonaws\.com/#newName: ${registry}/#" "${overlay}"
rm -f "${overlay}.bak"
"${repo_root}/deploy/set-image-tag.sh" "$(dirname "${overlay}")" "${tag}"
echo "deploy/k8s/overlays/eks now uses ${registry} (tag ${tag})"
