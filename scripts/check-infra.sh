#!/usr/bin/env bash
# Checks the AWS deployment without an AWS account: the SAM template (sam validate --lint and
# cfn-lint), the CDK app (npm ci, cdk synth, cfn-lint on its output) and the Lambda build
# (cargo lambda build --release). Nothing here calls AWS; telemetry of the tools is off.
#
#   scripts/check-infra.sh                 all steps
#   PARQUETRY_LAMBDA_BUILD=0 ...           skip the Lambda build
#   PARQUETRY_LAMBDA_BINS="push query" ... which functions to build (default: push only; both
#                                          link DataFusion, and each binary's release codegen
#                                          costs ~9 CPU-minutes on top of the shared crates)
#   PARQUETRY_LAMBDA_RELEASE=1 ...         `--release` as `sam build` does: cargo-lambda then adds thin
#                                          LTO and panic=abort, ~30 min on 2 cores for push alone;
#                                          the default dev build checks the Lambda target build and
#                                          link in a fraction of that
#   PARQUETRY_LAMBDA_ARCH=arm64 ...        build for arm64 (needs `rustup target add
#                                          aarch64-unknown-linux-gnu`, which CI cannot fetch;
#                                          the default x86-64 needs only the host toolchain)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/parquetry-target}"
export SAM_CLI_TELEMETRY=0
export CDK_DISABLE_CLI_TELEMETRY=true
venv="${PARQUETRY_VENV:-$HOME/.cache/parquetry-venv}"

step_start=0
step() {
  step_start=$(date +%s)
  echo "== check-infra: $1"
}
done_step() {
  echo "   ($1 took $(($(date +%s) - step_start)) s)"
}

step "tools (pip, pinned)"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  aws-sam-cli==1.170.0 cfn-lint==1.58.0 cargo-lambda==1.9.2 ziglang==0.14.1
done_step tools

step "sam validate --lint infra/template.yaml"
# SAM reads the region for its lint; no request is made.
AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}" \
  "$venv/bin/sam" validate --lint -t infra/template.yaml
done_step "sam validate"

step "cfn-lint infra/template.yaml"
"$venv/bin/cfn-lint" infra/template.yaml
done_step cfn-lint

step "cdk synth (infra/cdk) + cfn-lint"
cdk_out="$(mktemp -d)"
trap 'rm -rf "$cdk_out"' EXIT
(
  cd infra/cdk
  npm ci --no-audit --no-fund --loglevel=error
  npx --no-install cdk synth --quiet -c allowMissingAssets=true -o "$cdk_out" >/dev/null
)
# W3005: the DependsOn that CDK itself adds next to a GetAtt on the function's role.
"$venv/bin/cfn-lint" --ignore-checks W3005 -- "$cdk_out/parquetry.template.json"
done_step "cdk synth"

if [ "${PARQUETRY_LAMBDA_BUILD:-1}" != 0 ]; then
  arch="${PARQUETRY_LAMBDA_ARCH:-x86-64}"
  bins="${PARQUETRY_LAMBDA_BINS:-push}"
  profile_args=()
  [ "${PARQUETRY_LAMBDA_RELEASE:-0}" = 1 ] && profile_args+=(--release)
  step "cargo lambda build ${profile_args[*]} --$arch ($bins)"
  bin_args=()
  for f in $bins; do bin_args+=(--bin "$f"); done
  # Deployable size: the workspace release profile keeps line tables (~410 MB unstripped).
  CARGO_PROFILE_RELEASE_STRIP=symbols PATH="$venv/bin:$PATH" cargo lambda build "${profile_args[@]}" "--$arch" \
    "${bin_args[@]}" --lambda-dir "$CARGO_TARGET_DIR/lambda"
  for f in $bins; do
    ls -l "$CARGO_TARGET_DIR/lambda/$f/bootstrap" | awk -v f="$f" '{print "   " f ": " $5 " bytes"}'
  done
  done_step "cargo lambda build"
fi
echo "== check-infra: ok"
