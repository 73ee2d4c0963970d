#!/usr/bin/env bash
# gen-dev-pki.sh -- build the development/test PKI for subgate with the openssl CLI only.
#
# Usage: scripts/gen-dev-pki.sh [--force] [--quiet] [DIR]
#   DIR defaults to certs/dev under the repository root. An existing complete
#   PKI in DIR is left alone (exit 0 with a note) unless --force is given, in
#   which case every file this script owns in DIR is replaced.
# See certs/README.md for what each file is and who trusts what.
set -euo pipefail

usage() {
	echo "usage: $0 [--force] [--quiet] [DIR]" >&2
	exit 2
}

force=0
quiet=0
dir=
while [ $# -gt 0 ]; do
	case "$1" in
	--force) force=1 ;;
	--quiet|-q) quiet=1 ;;
	-h|--help) usage ;;
	-*) echo "$0: unknown option $1" >&2; usage ;;
	*) [ -z "$dir" ] || usage; dir=$1 ;;
	esac
	shift
done
if [ -z "$dir" ]; then
	dir="$(cd "$(dirname "$0")/.." && pwd)/certs/dev"
fi

command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }

# Every file a complete PKI has; processor.spki is written last.
CAS="service-ca gateway-ca gateway-client-ca processor-ca other-ca"
LEAVES="gateway gateway-rsa tenant-acme tenant-globex tenant-unknown client-dns
	client-cn client-expired client-revoked client-otherca processor
	processor-wrongname processor-otherca gateway-client"
complete=1
for n in $CAS $LEAVES; do
	[ -s "$dir/$n.crt" ] && [ -s "$dir/$n.key" ] || complete=0
done
[ -s "$dir/service-ca.crl" ] && [ -s "$dir/processor.spki" ] || complete=0
if [ $complete -eq 1 ] && [ $force -eq 0 ]; then
	echo "gen-dev-pki: $dir already holds a complete PKI; use --force to replace it" >&2
	exit 0
fi

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
umask 022
rm -rf "$dir"/.ca-*

say() { [ $quiet -eq 1 ] || echo "gen-dev-pki: $*"; }

# One openssl ca database per CA, in DIR/.ca-NAME. The config names only
# relative paths: openssl always runs with the database directory as its
# working directory and gets -cert/-keyfile on the command line, so the
# directory can be copied elsewhere (tests revoke more certificates in a copy).
cadb() {
	local d="$dir/.ca-$1"
	mkdir -p "$d/newcerts"
	: >"$d/index.txt"
	echo "unique_subject = no" >"$d/index.txt.attr"
	echo 1000 >"$d/serial"
	echo 1000 >"$d/crlnumber"
	cat >"$d/ca.cnf" <<'EOF'
[ ca ]
default_ca = devca

[ devca ]
dir              = .
database         = $dir/index.txt
new_certs_dir    = $dir/newcerts
serial           = $dir/serial
crlnumber        = $dir/crlnumber
default_md       = sha256
default_days     = 825
default_crl_days = 30
policy           = policy_any
unique_subject   = no
email_in_dn      = no
copy_extensions  = none
preserve         = yes

[ policy_any ]
organizationName       = optional
organizationalUnitName = optional
commonName             = supplied

[ crl_ext ]
authorityKeyIdentifier = keyid:always

[ req ]
distinguished_name = req_dn
prompt             = no

[ req_dn ]
CN = placeholder

[ v3_ca ]
basicConstraints       = critical, CA:TRUE, pathlen:0
keyUsage               = critical, keyCertSign, cRLSign
subjectKeyIdentifier   = hash
authorityKeyIdentifier = keyid:always
EOF
}

# key NAME [rsa]: a new private key, created 0600 from the start.
key() {
	local out="$dir/$1.key"
	rm -f "$out"
	if [ "${2:-}" = rsa ]; then
		(umask 077; openssl genpkey -quiet -algorithm RSA \
		    -pkeyopt rsa_keygen_bits:2048 -out "$out")
	else
		(umask 077; openssl genpkey -quiet -algorithm EC \
		    -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve \
		    -out "$out")
	fi
	chmod 0600 "$out"
}

# ca NAME CN: a self-signed CA, ten years.
ca() {
	cadb "$1"
	key "$1"
	(cd "$dir/.ca-$1" && openssl req -new -x509 -config ca.cnf \
	    -extensions v3_ca -key "$dir/$1.key" -subj "/O=subgate dev/CN=$2" \
	    -days 3650 -sha256 -out "$dir/$1.crt")
}

# leaf CA NAME SUBJ KIND SAN [rsa] [STARTDATE ENDDATE]
#   KIND: server or client (extended key usage); SAN: subjectAltName value or "".
leaf() {
	local signer=$1 name=$2 subj=$3 kind=$4 san=$5 alg=${6:-ec}
	local start=${7:-} end=${8:-}
	local d="$dir/.ca-$signer" ext="$dir/.ca-$signer/$name.ext" ku eku
	key "$name" "$alg"
	if [ "$alg" = rsa ]; then
		ku="critical, digitalSignature, keyEncipherment"
	else
		ku="critical, digitalSignature"
	fi
	if [ "$kind" = server ]; then eku=serverAuth; else eku=clientAuth; fi
	{
		echo "[ leaf ]"
		echo "basicConstraints = critical, CA:FALSE"
		echo "keyUsage = $ku"
		echo "extendedKeyUsage = $eku"
		echo "subjectKeyIdentifier = hash"
		echo "authorityKeyIdentifier = keyid:always"
		[ -z "$san" ] || echo "subjectAltName = $san"
	} >"$ext"
	openssl req -new -key "$dir/$name.key" -subj "$subj" \
	    -out "$d/$name.csr" 2>/dev/null
	# Backdated an hour so a slightly slow clock elsewhere still accepts it.
	local dates=(-startdate "$(date -u -d '-1 hour' +%Y%m%d%H%M%SZ)" -days 825)
	[ -z "$start" ] || dates=(-startdate "$start" -enddate "$end")
	(cd "$d" && openssl ca -batch -notext -config ca.cnf \
	    -cert "$dir/$signer.crt" -keyfile "$dir/$signer.key" \
	    -extfile "$ext" -extensions leaf "${dates[@]}" \
	    -in "$name.csr" -out "$dir/$name.crt" 2>/dev/null) || {
		echo "gen-dev-pki: signing $name with $signer failed" >&2
		exit 1
	}
}

say "writing PKI to $dir"

# --- CAs --------------------------------------------------------------------
ca service-ca "subgate dev service CA"			# signs the service's client certs
ca gateway-ca "subgate dev gateway CA"			# signs subgate's server cert
ca gateway-client-ca "subgate dev gateway client CA"	# signs subgate's cert toward processors
ca processor-ca "subgate dev processor CA"		# signs processors' server certs
ca other-ca "untrusted dev CA"				# trusted by nobody

# --- subgate's server certificates (the service trusts gateway-ca) ----------
GW_SAN="DNS:localhost, DNS:subgate.test, IP:127.0.0.1, IP:::1"
leaf gateway-ca gateway "/O=subgate dev/CN=subgate.test" server "$GW_SAN"
leaf gateway-ca gateway-rsa "/O=subgate dev/CN=subgate.test" server "$GW_SAN" rsa

# --- the service's client certificates (subgate trusts service-ca) ----------
T=spiffe://personadesk.test/tenant
leaf service-ca tenant-acme "/O=personadesk/CN=acme service" client "URI:$T/acme/service"
leaf service-ca tenant-globex "/O=personadesk/CN=globex service" client "URI:$T/globex/service"
leaf service-ca tenant-unknown "/O=personadesk/CN=nobody service" client "URI:$T/nobody/service"
leaf service-ca client-dns "/O=personadesk/CN=dns client" client "DNS:svc.acme.test"
leaf service-ca client-cn "/O=personadesk/CN=cn-only-client" client ""
leaf service-ca client-expired "/O=personadesk/CN=expired client" client \
    "URI:$T/acme/service" ec 20200101000000Z 20210101000000Z
leaf service-ca client-revoked "/O=personadesk/CN=revoked client" client "URI:$T/acme/service"
leaf other-ca client-otherca "/O=elsewhere/CN=acme impostor" client "URI:$T/acme/service"

(cd "$dir/.ca-service-ca" && openssl ca -batch -config ca.cnf \
    -cert "$dir/service-ca.crt" -keyfile "$dir/service-ca.key" \
    -revoke "$dir/client-revoked.crt" -crl_reason keyCompromise 2>/dev/null &&
 openssl ca -batch -config ca.cnf -cert "$dir/service-ca.crt" \
    -keyfile "$dir/service-ca.key" -gencrl -crldays 30 -crlexts crl_ext \
    -out "$dir/service-ca.crl" 2>/dev/null) || {
	echo "gen-dev-pki: CRL generation failed" >&2
	exit 1
}

# --- processors (subgate trusts processor-ca; processors trust gateway-client-ca)
P_SAN="DNS:crm.processor.test, DNS:calendar.processor.test, DNS:localhost, IP:127.0.0.1, IP:::1"
leaf processor-ca processor "/O=processor dev/CN=crm.processor.test" server "$P_SAN"
leaf processor-ca processor-wrongname "/O=processor dev/CN=wrong.processor.test" server \
    "DNS:wrong.processor.test"
leaf other-ca processor-otherca "/O=elsewhere/CN=crm.processor.test" server "$P_SAN"
leaf gateway-client-ca gateway-client "/O=subgate dev/CN=subgate gateway client" client \
    "DNS:gateway-client.subgate.test"

# --- the processor's key pin ------------------------------------------------
spki=$(openssl x509 -in "$dir/processor.crt" -noout -pubkey |
	openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | openssl base64 -A)
echo "$spki" >"$dir/processor.spki"

rm -f "$dir"/.ca-*/*.csr
say "done; processor.crt SPKI SHA-256 (pin_sha256): $spki"
