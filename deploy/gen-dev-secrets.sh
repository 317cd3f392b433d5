#!/usr/bin/env bash
# Makes DEVELOPMENT-ONLY key material for deploy/compose.yaml in deploy/secrets/
# (git-ignored). Never use these files in production: there, keys come from your
# organisation's PKI and secret store (see deploy/README.md, "Secrets").
#
#   signing-ed25519.pem   the gateway's access-token signing key (Ed25519, PKCS#8)
#   webhook-ed25519.pem   the change-notification signing key (Ed25519, PKCS#8)
#   ca.crt                a throwaway CA that signed server.crt (give it to clients: curl --cacert)
#   server.crt/.key       TLS for https://localhost:8443 and https://gateway:8443 (compose network)
#   postgres-password     the audit database user's password (PostgreSQL and the gateway read it)
#   redis-password        the Redis password (Redis and the gateway read it)
#
# Needs openssl 3. Existing files are kept (a missing password file or notification key
# is still made); pass --force to replace them all.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
cd secrets

force=false
[ "${1:-}" = "--force" ] && force=true

# One line of random hex each: nothing to quote in a shell, URL or connection string.
for name in postgres-password redis-password; do
  if [ ! -e "$name" ] || [ "$force" = true ]; then
    openssl rand -hex 24 >"$name"
    chmod 0644 "$name"
    echo "made $name"
  fi
done

# The notification key came later than the others: made on its own when missing, so an
# existing deploy/secrets/ gains it without --force.
if [ ! -e webhook-ed25519.pem ] || [ "$force" = true ]; then
  openssl genpkey -quiet -algorithm ed25519 -out webhook-ed25519.pem
  # Read by uid 10001 in the container (see the chmod below): TEST-ONLY.
  chmod 0644 webhook-ed25519.pem
  echo "made webhook-ed25519.pem"
fi

if [ -e signing-ed25519.pem ] && [ "$force" = false ]; then
  echo "deploy/secrets/ already has keys (use --force to replace them)"
  exit 0
fi

openssl genpkey -quiet -algorithm ed25519 -out signing-ed25519.pem

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout ca.key -out ca.crt -days 30 -subj "/CN=gp-gateway compose dev CA" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf '%s\n' \
  "subjectAltName=DNS:localhost,DNS:gateway,IP:127.0.0.1" \
  "basicConstraints=critical,CA:FALSE" \
  "keyUsage=critical,digitalSignature" \
  "extendedKeyUsage=serverAuth" > server.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out server.crt -days 30 -extfile server.ext 2>/dev/null
rm -f server.csr server.ext ca.srl ca.key

# compose mounts these files into containers running as uid 10001: they must be
# readable by that user. Acceptable for throwaway development keys only.
chmod 0644 signing-ed25519.pem server.key server.crt ca.crt
echo "development keys written to $(pwd) (valid 30 days; TEST-ONLY)"
