#!/usr/bin/env bash
# demo.sh -- run subgate between a sample service call and a sample processor, and show
# side by side what the service sent and what the processor received.
# Used by `make demo` (which installs dependencies and builds first). Cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
PY=/usr/bin/python3
conf=conf/subgate.conf
work=$(mktemp -d /tmp/subgate-demo.XXXXXX)
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Settings of the example config this demo relies on.
gw_port=$(sed -n 's/^listen *= *{.*port *= *\([0-9]*\).*/\1/p' "$conf" | head -1)
admin_port=$(sed -n 's/^admin *= *{.*port *= *\([0-9]*\).*/\1/p' "$conf" | head -1)
gw_port=${gw_port:-8443}
admin_port=${admin_port:-9901}
crm_port=9444
cal_port=9445
for p in "$gw_port" "$admin_port" "$crm_port" "$cal_port"; do
	if port_busy "$p"; then
		echo "demo: port $p on 127.0.0.1 is in use; stop what listens there and retry" >&2
		exit 1
	fi
done

say "dev PKI (certs/dev) and processor credentials (conf/secrets)"
scripts/gen-dev-pki.sh --quiet certs/dev
mkdir -p conf/secrets
chmod 700 conf/secrets
for s in crm calendar acme-crm; do
	if [ ! -f "conf/secrets/$s.token" ]; then
		(umask 077; printf 'Bearer demo-%s-%s\n' "$s" "$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')" \
			> "conf/secrets/$s.token")
	fi
done
# Keys and the audit log of this run live in the temporary directory: the
# demo's config is the example with those two paths changed.
sed -e "s|conf/keys/|$work/keys/|g" -e "s|\"var/audit\"|\"$work/audit\"|" \
	conf/subgate.conf >"$work/subgate.conf"
conf=$work/subgate.conf
say "keys: subgatectl keys init + keys sync (master keys, one data key per tenant and integration)"
build/subgatectl keys init "$work/keys" | sed 's/^/  /'
build/subgatectl keys sync -c "$conf" | sed 's/^/  /'

say "sample processors (HTTPS, require the gateway's client certificate)"
# The CRM answers with the contact as it stored it (reflect), so the
# response shows subgate turning its tokens back into the real values.
for p in $crm_port $cal_port; do
	$PY tests/integration/processor.py --host 127.0.0.1 --port "$p" --mode reflect \
		--cert certs/dev/processor.crt --key certs/dev/processor.key \
		--client-ca certs/dev/gateway-client-ca.crt --record "$work/received-$p.jsonl" \
		>"$work/processor-$p.log" 2>&1 &
	pids+=($!)
done

say "subgate -t -c $conf"
build/subgate -t -c "$conf"
build/subgate -c "$conf" 2>"$work/subgate.log" &
pids+=($!)
for _ in $(seq 100); do
	curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null || {
	echo "demo: subgate did not become ready; its log:" >&2
	cat "$work/subgate.log" >&2
	exit 1
}

say "the service (tenant acme) posts a call summary to the CRM through subgate"
echo "curl --cert certs/dev/tenant-acme.crt ... https://localhost:$gw_port/crm/v1/contacts"
curl -sS --fail-with-body --cacert certs/dev/gateway-ca.crt \
	--cert certs/dev/tenant-acme.crt --key certs/dev/tenant-acme.key \
	-H 'Content-Type: application/json' -H 'X-Request-Id: demo-call-1' \
	-H 'X-Debug-User: maria' \
	--data-binary @scripts/demo/call-summary.json \
	"https://localhost:$gw_port/crm/v1/contacts" >"$work/response.json"

$PY - "$work/received-$crm_port.jsonl" scripts/demo/call-summary.json "$work/response.json" <<'PYEOF'
import json, sys, textwrap
rec = [json.loads(l) for l in open(sys.argv[1])]
sent = open(sys.argv[2]).read()
got = rec[-1]
def block(title, lines):
	return [title, "-" * len(title)] + lines
left = block("what the service sent", ["POST /crm/v1/contacts", "Content-Type: application/json",
	"X-Request-Id: demo-call-1", "X-Debug-User: maria", ""] + json.dumps(json.loads(sent), indent=2).splitlines())
hdrs = ["%s: %s" % (k, "<secret from conf/secrets>" if k.lower() == "authorization" else v) for k, v in got["headers"]]
body = json.dumps(got["json"], indent=2).splitlines() if got["json"] is not None else [got["body"]]
right = block("what the processor received", ["%s %s" % (got["method"], got["target"])] + hdrs + [""] + body)
def cut(l, n=64):
	return l if len(l) <= n else l[:n - 3] + "..."
left = [cut(l) for l in left]
right = [cut(l) for l in right]
w = max(len(l) for l in left) + 3
for i in range(max(len(left), len(right))):
	a = left[i] if i < len(left) else ""
	b = right[i] if i < len(right) else ""
	print(a.ljust(w) + "| " + b)
print()
print("response returned to the service (the CRM echoed what it stored; subgate restored e-mail and phone):")
print(textwrap.indent(json.dumps(json.load(open(sys.argv[3])), indent=2), "  "))
PYEOF

say "a call the policy does not allow: DELETE is not a listed endpoint"
curl -sS --cacert certs/dev/gateway-ca.crt --cert certs/dev/tenant-acme.crt \
	--key certs/dev/tenant-acme.key -X DELETE "https://localhost:$gw_port/crm/v1/contacts/42"
echo
say "a client without a tenant certificate never gets in"
curl -sS --cacert certs/dev/gateway-ca.crt "https://localhost:$gw_port/crm/v1/contacts" 2>&1 | sed 's/^/  /' || true

say "the disclosure record, decrypted with the compliance reader's key (subgatectl audit show)"
build/subgatectl audit show "$work/audit" --key "$work/keys/offline/audit-reader.key" \
	--type disclosure --format jsonl | tail -1 | $PY -m json.tool
say "which processors received Maria's data? (subgatectl audit show --subject -)"
echo 'maria.gonzalez@example.net' | build/subgatectl audit show "$work/audit" \
	--key "$work/keys/offline/audit-reader.key" --index-key "$work/keys/audit-index.key" \
	--subject - --format table
say "the log is intact (subgatectl audit verify, with the signer's public key only)"
build/subgatectl audit verify "$work/audit" --public-key "$work/keys/audit-signer.pub"

say "subgate's operational log (no field values, no concrete paths)"
grep 'msg=request' "$work/subgate.log" || true
echo
echo "demo: done; processes stopped and temporary files removed."
