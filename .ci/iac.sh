#!/usr/bin/env bash
# Validates the four forms of `pullthrough rules -o` (the golden files in tests/golden/rules,
# which tests/rules_code.rs holds equal to the program's output) with real parsers and linters:
# python-hcl2 for Terraform (and terraform fmt when terraform is installed; never terraform init,
# which would fetch the provider), Python's
# compiler and pulumi_aws's own types (when pulumi_aws installs) for Pulumi, cfn-lint for
# CloudFormation, and bash -n for the AWS CLI commands.
set -euo pipefail
# Nothing of this check is left in the tree.
export PYTHONDONTWRITEBYTECODE=1
cd "$(dirname "$0")/.."
golden=tests/golden/rules

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@" >&2
}
python3 -c 'import hcl2' 2>/dev/null || pip_install 'python-hcl2>=7,<9'
command -v cfn-lint >/dev/null || pip_install 'cfn-lint>=1.20,<2'

echo "== AWS CLI: the commands run against a stand-in aws that checks their JSON arguments"
cli=$(mktemp)
{
  cat <<'SH'
aws() {
  local prev=
  for arg in "$@"; do
    case $prev in
      --lifecycle-policy|--secret-string) python3 -c 'import json,sys; json.loads(sys.argv[1])' "$arg" ;;
    esac
    prev=$arg
  done
  case "$1 $2" in
    "secretsmanager create-secret") echo "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x" ;;
    "ecr create-pull-through-cache-rule"|"ecr create-repository-creation-template") ;;
    *) echo "unexpected command: aws $*" >&2; return 1 ;;
  esac
  echo "aws $1 $2" >&2
}
set -euo pipefail
SH
  grep -E '^(aws |SECRET_ARN=|LIFECYCLE_POLICY=)' "$golden/rules.sh.txt"
} >"$cli"
bash "$cli" 2>&1 | sort | uniq -c
rm -f "$cli"

echo "== Terraform: python-hcl2"
python3 - "$golden/main.tf" <<'PY'
import json, sys
import hcl2

with open(sys.argv[1]) as f:
    doc = hcl2.load(f)
def unquote(s):
    return s.strip('"') if isinstance(s, str) else s

kinds = {}
for block in doc["resource"]:
    for kind, named in block.items():
        kinds[unquote(kind)] = kinds.get(unquote(kind), 0) + len(named)
print("resources:", dict(sorted(kinds.items())))
for kind in ("aws_ecr_pull_through_cache_rule", "aws_ecr_repository_creation_template", "aws_secretsmanager_secret"):
    assert kinds.get(kind), f"no {kind}"
policy = unquote(doc["locals"][0]["cache_lifecycle_policy"])
if policy.startswith("<<"):
    policy = policy.split("\n", 1)[1].rsplit("\n", 1)[0]
json.loads(policy)
print("lifecycle policy heredoc is JSON")
PY
if command -v terraform >/dev/null; then
  tf=$(mktemp -d)
  cp "$golden/main.tf" "$tf/"
  echo "terraform fmt -check (offline):"
  terraform fmt -check -diff "$tf/main.tf"
  rm -rf "$tf"
fi

echo "== Pulumi: Python compiler, and pulumi_aws types under Pulumi's mocks"
python3 -c 'import sys; compile(open(sys.argv[1]).read(), sys.argv[1], "exec")' "$golden/__main__.py"
echo "compiles"
if python3 -c 'import pulumi_aws' 2>/dev/null || pip_install 'pulumi>=3,<4' 'pulumi-aws>=6,<8' 2>/dev/null; then
  python3 - "$golden/__main__.py" <<'PY'
import runpy, sys
import pulumi

class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        return [args.name + "_id", dict(args.inputs, arn=f"arn:aws:mock:::{args.name}")]
    def call(self, args):
        return {}

pulumi.runtime.set_mocks(Mocks(), project="pullthrough", stack="check", preview=False)
created = []
orig = pulumi.CustomResource.__init__
def record(self, t, name, *a, **k):
    created.append(t)
    return orig(self, t, name, *a, **k)
pulumi.CustomResource.__init__ = record
runpy.run_path(sys.argv[1], run_name="__main__")
kinds = sorted(set(created))
print("resources:", kinds)
for kind in ("aws:ecr/pullThroughCacheRule:PullThroughCacheRule", "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate", "aws:secretsmanager/secret:Secret"):
    assert kind in kinds, kind
PY
else
  echo "pulumi_aws cannot be installed here: compiled only"
fi

echo "== CloudFormation: cfn-lint"
cfn-lint --regions eu-west-1 -- "$golden/template.yaml"
echo "cfn-lint: no findings"
