#!/usr/bin/env bash
# bench.sh -- subgate next to nginx and HAProxy doing the same mTLS -> mTLS reverse-proxy job
# on loopback; prints a Markdown table and a "bench: ..." line, writes tests/bench/RESULTS.md.
#
# Run by `make bench` (never by `make test`). Environment:
#   BENCH_QUICK=1      smoke version (1 run of 2 s per case, small memory test), ~2 minutes
#   BENCH_RUNS=N       runs per case (default 5; quick 1)
#   BENCH_SECONDS=S    seconds per run (default 5; quick 2)
#   BENCH_CONNS="64 256"  connection counts
#   BENCH_KEEP=1       keep the work directory (configs, logs, raw wrk output)
#   BENCH_TMP=DIR      where the work directory (and the audit log) goes; must not be tmpfs
#   BENCH_RESULTS=FILE where the report goes (default tests/bench/RESULTS.md; quick: none)
# Raw results (wrk output, tables) are kept in build/bench/last-run:
#   tests/bench/report.py --work build/bench/last-run ... re-renders the report.
#
# Layout: the proxy under test is pinned to core 0, the upstream (nginx answering a fixed
# 1 KB JSON body) and the load generator (wrk with an LD_PRELOAD shim that loads the
# client certificate) to core 1. Every contender has one worker, the same ECDSA P-256
# certificates, client certificates required on both sides, upstream keep-alive. Runs are
# interleaved across contenders. Every process this script starts is stopped by PID on
# exit, also when interrupted.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
PY=/usr/bin/python3

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
	RUNS=${BENCH_RUNS:-1}; DUR=${BENCH_SECONDS:-2}; MEM_NS=${BENCH_MEM_NS:-"1000 10000"}
	RESULTS=${BENCH_RESULTS:-}
else
	RUNS=${BENCH_RUNS:-5}; DUR=${BENCH_SECONDS:-5}; MEM_NS=${BENCH_MEM_NS:-"1000 10000"}
	RESULTS=${BENCH_RESULTS:-tests/bench/RESULTS.md}
fi
CONNS=${BENCH_CONNS:-"64 256"}
PROXY_CPU=0
LOAD_CPU=1
[ "$(nproc)" -ge 2 ] || { PROXY_CPU=0; LOAD_CPU=0; echo "bench: one CPU only: no separation" >&2; }

# Ports on 127.0.0.1.
P_UP=19443 P_SG=18443 P_SG_ADMIN=19911 P_SHM=18446 P_SHM_ADMIN=19912
P_NGX=18444 P_NGXDEF=18447 P_HAP=18445

say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "bench: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# processes: every one started is recorded and stopped by PID

pids=()
work=
shm_audit=
cleanup() {
	local p c kids=()
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do
		[ -n "$p" ] || continue
		for c in $(pgrep -P "$p" 2>/dev/null || true); do kids+=("$c"); done
	done
	for p in "${pids[@]}"; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do
		local alive=0
		for p in "${pids[@]}" "${kids[@]}"; do
			[ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1
		done
		[ $alive -eq 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}" "${kids[@]}"; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
	[ -n "$shm_audit" ] && rm -rf "$shm_audit"
	if [ -n "$work" ]; then
		if [ "${BENCH_KEEP:-0}" = 1 ]; then
			echo "bench: work directory kept: $work" >&2
		else
			rm -rf "$work"
		fi
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid PID: TERM it (and its children), wait, KILL what is left; forget it.
stop_pid() {
	local p=$1 kids i
	kids=$(pgrep -P "$p" 2>/dev/null || true)
	kill -TERM "$p" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$p" $kids 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	for i in "${!pids[@]}"; do [ "${pids[$i]}" = "$p" ] && pids[$i]=; done
	return 0
}

# tree PID: the PID and its children (nginx master + worker, subgate + audit process).
tree() { echo "$1" $(pgrep -P "$1" 2>/dev/null || true); }

# rss_kib PID...: summed VmRSS.
rss_kib() {
	local s=0 p v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		s=$((s + ${v:-0}))
	done
	echo $s
}

# cpu_ticks PID...: summed utime + stime (clock ticks).
cpu_ticks() {
	local s=0 p v
	for p in "$@"; do
		v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
		s=$((s + ${v:-0}))
	done
	echo $s
}

# core_ticks CPU: "busy total" jiffies of one core from /proc/stat.
core_ticks() {
	awk -v c="cpu$1" '$1 == c {t = 0; for (i = 2; i <= NF; i++) t += $i;
		print t - $5 - $6, t}' /proc/stat
}

listening() { ss -ltnH "sport = :$1" 2>/dev/null | grep -q LISTEN; }

port_free_or_die() {
	for p in "$@"; do
		listening "$p" && die "port $p on 127.0.0.1 is in use; stop what listens there and retry"
	done
	return 0
}

wait_listen() {
	local port=$1 pid=$2 name=$3
	for _ in $(seq 200); do
		listening "$port" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "bench: $name did not come up; its log:" >&2
	cat "$work/$name.log" "$work/$name/error.log" 2>/dev/null | tail -20 >&2 || true
	exit 1
}

# ---------------------------------------------------------------------------
say "dependencies and build (release flags into build/bench)"
scripts/install-deps.sh bench
ulimit -n "$(ulimit -Hn)" || true
B=build/bench
CFLAGS='-O2 -g -DNDEBUG' make -s -j"$(nproc)" BUILD=$B $B/subgate >&2 ||
	die "building $B/subgate failed"
SG=$top/$B/subgate
if CFLAGS='-O2 -g -DNDEBUG' make -s -j"$(nproc)" BUILD=$B $B/subgatectl >&2; then
	CTL=$top/$B/subgatectl
elif [ -x build/subgatectl ]; then
	echo "bench: $B/subgatectl does not build; using build/subgatectl for keys" >&2
	CTL=$top/build/subgatectl
else
	die "no subgatectl"
fi
T=$top/$B/benchtools
mkdir -p "$T"
PKGS="openssl libevent libevent_openssl libevent_pthreads libconfig jemalloc"
cc -O2 -Wall -shared -fPIC -o "$T/wrk_mtls_shim.so" tests/bench/wrk_mtls_shim.c -ldl \
	$(pkg-config --cflags --libs openssl)
cc -O2 -std=c11 -D_GNU_SOURCE -Wall -o "$T/hold_conns" tests/bench/hold_conns.c \
	$(pkg-config --cflags --libs openssl)
for t in policy_bench audit_bench; do
	cc -O2 -g -std=c11 -D_GNU_SOURCE -Wall -Iproxy -o "$T/$t" "tests/bench/$t.c" \
		$B/libsubgate.a $(pkg-config --cflags --libs $PKGS) -lunistring -lpthread -lm
done

port_free_or_die $P_UP $P_SG $P_SG_ADMIN $P_SHM $P_SHM_ADMIN $P_NGX $P_NGXDEF $P_HAP

work=$(mktemp -d "${BENCH_TMP:-/tmp}/subgate-bench.XXXXXX")
fstype=$(stat -f -c %T "$work")
[ "$fstype" != tmpfs ] || die "$work is on tmpfs: set BENCH_TMP to a directory on disk"
shm_audit=$(mktemp -d /dev/shm/subgate-bench-audit.XXXXXX)
W=$work
PKI=$W/pki
mkdir -p "$W/runs"

say "PKI, keys and configs in $W"
scripts/gen-dev-pki.sh --quiet "$PKI"
cat "$PKI/tenant-acme.crt" "$PKI/tenant-acme.key" >"$PKI/tenant-acme.pem"
CLIENT_CRT=$PKI/tenant-acme.crt
CLIENT_KEY=$PKI/tenant-acme.key
response=$(cat tests/bench/response-1k.json)

render() {	# render TEMPLATE OUT KEY=VALUE...
	local in=$1 out=$2 args=() kv
	shift 2
	for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
	sed "${args[@]}" "$in" >"$out"
}

mkdir -p "$W/upstream"
render tests/bench/upstream-nginx.conf "$W/upstream/nginx.conf" W="$W" PKI="$PKI" \
	PORT=$P_UP RESPONSE="$response"
for n in nginx nginx-default; do
	mkdir -p "$W/$n"
	session="ssl_session_tickets off; ssl_session_cache off;"
	port=$P_NGX
	[ $n = nginx-default ] && { session="# nginx defaults (tickets on)"; port=$P_NGXDEF; }
	render tests/bench/proxy-nginx.conf "$W/$n/nginx.conf" W="$W" NAME=$n PKI="$PKI" \
		PORT=$port UPPORT=$P_UP SESSION="$session"
done
mkdir -p "$W/haproxy"
cat "$PKI/gateway.crt" "$PKI/gateway.key" >"$W/haproxy/gateway.pem"
cat "$PKI/gateway-client.crt" "$PKI/gateway-client.key" >"$W/haproxy/gateway-client.pem"
render tests/bench/proxy-haproxy.cfg "$W/haproxy/haproxy.cfg" W="$W" PKI="$PKI" \
	PORT=$P_HAP UPPORT=$P_UP
for n in subgate subgate-shm; do
	keys=$W/keys-$n
	"$CTL" keys init "$keys" >/dev/null
	if [ $n = subgate ]; then
		render tests/bench/subgate-bench.conf "$W/$n.conf" KEYS="$keys" PKI="$PKI" \
			PORT=$P_SG ADMIN=$P_SG_ADMIN UPPORT=$P_UP AUDIT="$W/audit"
	else
		render tests/bench/subgate-bench.conf "$W/$n.conf" KEYS="$keys" PKI="$PKI" \
			PORT=$P_SHM ADMIN=$P_SHM_ADMIN UPPORT=$P_UP AUDIT="$shm_audit/audit"
	fi
	"$CTL" keys sync -c "$W/$n.conf" >/dev/null
	"$SG" -t -c "$W/$n.conf" >/dev/null
done

# ---------------------------------------------------------------------------
# contenders

declare -A PID PORT URL_GET URL_POST ADMIN
PORT[subgate]=$P_SG; PORT[subgate-shm]=$P_SHM; PORT[nginx]=$P_NGX
PORT[nginx-default]=$P_NGXDEF; PORT[haproxy]=$P_HAP
ADMIN[subgate]=$P_SG_ADMIN; ADMIN[subgate-shm]=$P_SHM_ADMIN
for n in subgate subgate-shm; do
	URL_GET[$n]=https://127.0.0.1:${PORT[$n]}/pass/v1/contacts/42
	URL_POST[$n]=https://127.0.0.1:${PORT[$n]}/pass/v1/contacts
done
URL_POST[subgate-full]=https://127.0.0.1:$P_SG/full/v1/contacts
for n in nginx nginx-default haproxy; do
	URL_GET[$n]=https://127.0.0.1:${PORT[$n]}/v1/contacts/42
	URL_POST[$n]=https://127.0.0.1:${PORT[$n]}/v1/contacts
done

start() {	# start NAME: on the proxy core, wait until it listens (subgate: ready)
	local n=$1 p
	case $n in
	subgate|subgate-shm)
		taskset -c $PROXY_CPU "$SG" -c "$W/$n.conf" 2>"$W/$n.log" &
		p=$!
		wait_listen "${PORT[$n]}" $p "$n"
		for _ in $(seq 100); do
			curl -sf "http://127.0.0.1:${ADMIN[$n]}/readyz" >/dev/null 2>&1 && break
			sleep 0.05
		done ;;
	nginx|nginx-default)
		taskset -c $PROXY_CPU nginx -p "$W/$n/" -c "$W/$n/nginx.conf" -e "$W/$n/error.log" &
		p=$!
		wait_listen "${PORT[$n]}" $p "$n" ;;
	haproxy)
		taskset -c $PROXY_CPU haproxy -db -f "$W/haproxy/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
		p=$!
		wait_listen "${PORT[$n]}" $p "$n" ;;
	esac
	pids+=("$p")
	PID[$n]=$p
}

check() {	# check NAME URL [POSTFILE]: one request through the contender must give 200
	local n=$1 url=$2 body=${3:-} out code
	local args=(-s -o "$W/check.out" -w '%{http_code}' --cacert "$PKI/gateway-ca.crt"
		--cert "$CLIENT_CRT" --key "$CLIENT_KEY" --max-time 10)
	[ -z "$body" ] || args+=(-H 'Content-Type: application/json' --data-binary "@$body")
	code=$(curl "${args[@]}" "$url" || true)
	if [ "$code" != 200 ]; then
		echo "bench: $n: $url answered '$code':" >&2
		head -c 400 "$W/check.out" >&2 || true
		cat "$W/$n.log" "$W/$n/error.log" 2>/dev/null | tail -20 >&2 || true
		exit 1
	fi
}

say "upstream (nginx, TLS + client certificate, fixed 1 KB JSON) on core $LOAD_CPU"
taskset -c $LOAD_CPU nginx -p "$W/upstream/" -c "$W/upstream/nginx.conf" \
	-e "$W/upstream/error.log" &
pids+=($!)
wait_listen $P_UP $! upstream

say "proxies on core $PROXY_CPU: subgate, subgate (audit on tmpfs), nginx, nginx defaults, haproxy"
BODY=$top/tests/bench/call-summary-2k.json
for n in subgate subgate-shm nginx nginx-default haproxy; do
	start $n
	check $n "${URL_GET[$n]}"
	check $n "${URL_POST[$n]}" "$BODY"
done
check subgate-full "${URL_POST[subgate-full]}" "$BODY"
for n in subgate nginx haproxy; do
	echo | timeout 5 openssl s_client -connect 127.0.0.1:${PORT[$n]} -cert "$CLIENT_CRT" \
		-key "$CLIENT_KEY" 2>/dev/null | awk -v n=$n '/^New,/ {print n": "$0}' \
		>>"$W/tls.txt" || true
done

# ---------------------------------------------------------------------------
# load

# wrk_run WORKLOAD CONTENDER CONNS RUN: one bounded wrk run; appends a row to results.tsv.
wrk_run() {
	local wl=$1 n=$2 c=$3 r=$4 proc=$2 url args t0 t1 c0 c1 out
	[ $n = subgate-full ] && proc=subgate
	args=(-t1 -c"$c" -d"${DUR}s" --timeout 10s --latency)
	case $wl in
	get) url=${URL_GET[$n]} ;;
	post|full|audit|batch) url=${URL_POST[$n]}; args+=(-s "$top/tests/bench/post.lua") ;;
	handshake) url=${URL_GET[$n]}; args+=(-H 'Connection: close') ;;
	esac
	out=$W/runs/$wl-$n-$c-$r.txt
	local tr=$(tree "${PID[$proc]}")
	c0=$(cpu_ticks $tr)
	local l0=($(core_ticks $LOAD_CPU)) l1
	t0=$(date +%s.%N)
	BENCH_BODY=$BODY SHIM_CERT=$CLIENT_CRT SHIM_KEY=$CLIENT_KEY \
		LD_PRELOAD=$T/wrk_mtls_shim.so taskset -c $LOAD_CPU wrk "${args[@]}" "$url" \
		>"$out" 2>&1 || echo "wrk exited $?" >>"$out"
	t1=$(date +%s.%N)
	c1=$(cpu_ticks $tr)
	l1=($(core_ticks $LOAD_CPU))
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$n" "$c" "$r" "$out" \
		$((c1 - c0)) "$(echo "$t1 - $t0" | bc)" \
		"$(echo "scale=3; (${l1[0]} - ${l0[0]}) / (${l1[1]} - ${l0[1]} + 1)" | bc)" \
		>>"$W/results.tsv"
	printf '  %-9s %-14s c=%-4s run %s: %s\n' "$wl" "$n" "$c" "$r" \
		"$(awk '/^Requests\/sec/ {print $2 " req/s"}' "$out")" >&2
}

say "warm-up (1 s each)"
saved=$DUR; DUR=1
for n in subgate nginx haproxy nginx-default subgate-shm; do wrk_run get $n 64 0; done
for n in subgate subgate-full nginx haproxy subgate-shm; do wrk_run post $n 64 0; done
DUR=$saved
: >"$W/results.tsv"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "interleaved runs: $RUNS x ${DUR}s per case, connections: $CONNS"
for r in $(seq "$RUNS"); do
	for c in $CONNS; do
		for n in subgate nginx haproxy; do wrk_run get $n "$c" "$r"; done
		for n in subgate nginx haproxy; do wrk_run post $n "$c" "$r"; done
		wrk_run full subgate-full "$c" "$r"
		[ "$c" = 64 ] && wrk_run audit subgate-shm "$c" "$r"
		for n in subgate nginx haproxy nginx-default; do wrk_run handshake $n "$c" "$r"; done
	done
done

say "cross-check with ab (keep-alive GET, 64 concurrent)"
abn=$((QUICK == 1 ? 5000 : 30000))
for n in subgate nginx haproxy; do
	taskset -c $LOAD_CPU ab -q -k -c 64 -n $abn -E "$PKI/tenant-acme.pem" "${URL_GET[$n]}" \
		>"$W/ab-$n.txt" 2>&1 || true
	printf 'ab\t%s\t%s\n' $n "$(awk '/^Requests per second/ {print $4}' "$W/ab-$n.txt")" \
		>>"$W/extra.tsv"
	echo "  ab $n: $(awk '/^Requests per second/ {print $4}' "$W/ab-$n.txt") req/s" \
		"(failed: $(awk '/^Failed requests/ {print $3}' "$W/ab-$n.txt"))" >&2
done

say "audit group commit: records and fdatasyncs (/metrics) over one POST run (64 conns)"
# One counter's value from subgate's /metrics (0 when absent).
sg_counter() {
	curl -s "http://127.0.0.1:$P_SG_ADMIN/metrics" | awk -v n="$1" '$1 == n {print $2; f=1} END {if (!f) print 0}'
}
r0=$(sg_counter subgate_audit_records_total); s0=$(sg_counter subgate_audit_syncs_total)
wrk_run batch subgate 64 1 2>/dev/null || true
r1=$(sg_counter subgate_audit_records_total); s1=$(sg_counter subgate_audit_syncs_total)
printf 'batch\t%s\t%s\t%s\n' $((${s1%.*} - ${s0%.*})) $((${r1%.*} - ${r0%.*})) "$DUR" >>"$W/extra.tsv"
echo "  records $((${r1%.*} - ${r0%.*})) in $((${s1%.*} - ${s0%.*})) fdatasyncs over ${DUR}s" >&2
curl -s "http://127.0.0.1:$P_SG_ADMIN/metrics" >"$W/metrics.txt" || true

# ---------------------------------------------------------------------------
say "memory: RSS per idle mTLS connection (one GET each, then held), fresh proxies"
for n in subgate subgate-shm nginx nginx-default haproxy; do stop_pid "${PID[$n]}"; done
hold_path() { case $1 in subgate) echo /pass/v1/contacts/42 ;; *) echo /v1/contacts/42 ;; esac; }
for N in $MEM_NS; do
	for n in subgate nginx haproxy; do
		# HAProxy needs two descriptors per connection (see proxy-haproxy.cfg).
		Nn=$N
		[ $n = haproxy ] && [ "$N" -gt $((($(ulimit -n) - 200) / 2)) ] &&
			Nn=$((($(ulimit -n) - 200) / 2 / 100 * 100))
		start $n
		sleep 1
		tr=$(tree "${PID[$n]}")
		r0=$(rss_kib $tr)
		taskset -c $LOAD_CPU "$T/hold_conns" 127.0.0.1 "${PORT[$n]}" "$Nn" "$CLIENT_CRT" \
			"$CLIENT_KEY" "$(hold_path $n)" 64 180 >"$W/hold-$n-$N.out" \
			2>"$W/hold-$n-$N.err" &
		hp=$!
		pids+=($hp)
		for _ in $(seq 2000); do
			grep -q '^hold:' "$W/hold-$n-$N.out" 2>/dev/null && break
			kill -0 $hp 2>/dev/null || break
			sleep 0.1
		done
		sleep 1
		tr=$(tree "${PID[$n]}")
		r1=$(rss_kib $tr)
		line=$(grep '^hold:' "$W/hold-$n-$N.out" || echo "hold: open=$Nn ok=0 errors=$Nn")
		stop_pid $hp
		ok=$(echo "$line" | sed 's/.*ok=\([0-9]*\).*/\1/')
		errs=$(echo "$line" | sed 's/.*errors=\([0-9]*\).*/\1/')
		printf 'mem\t%s\t%s\t%s\t%s\t%s\t%s\n' $n "$N" "$r0" "$r1" "$ok" "$errs" >>"$W/extra.tsv"
		echo "  $n N=$Nn: RSS $r0 -> $r1 KiB, ok=$ok errors=$errs" \
			"($(( ok > 0 ? (r1 - r0) * 1024 / ok : 0 )) B/conn)" >&2
		stop_pid "${PID[$n]}"
	done
done

# ---------------------------------------------------------------------------
say "policy engine and audit writer alone"
taskset -c "$PROXY_CPU" "$T/policy_bench" "$BODY" $((QUICK == 1 ? 1 : 2)) | tee "$W/policy.txt" >&2
"$T/audit_bench" "$W/audit-bench" $((QUICK == 1 ? 1 : 3)) 2>"$W/audit-bench.log" |
	tee "$W/audit.txt" >&2

# ---------------------------------------------------------------------------
# The raw results stay in build/bench/last-run (report.py can be re-run on them).
rm -rf "$B/last-run"
mkdir -p "$B/last-run"
cp -r "$W/runs" "$W/results.tsv" "$W/extra.tsv" "$W/policy.txt" "$W/audit.txt" "$W/tls.txt" \
	"$B/last-run/" 2>/dev/null || true
machine="$(nproc) CPUs, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), Linux $(uname -r)"
$PY tests/bench/report.py --work "$W" --runs "$RUNS" --seconds "$DUR" --conns "$CONNS" \
	--machine "$machine" --fs "$fstype" --quick "$QUICK" --results "$RESULTS" \
	--load "before the runs $load_before, at the end $(cut -d' ' -f1-3 /proc/loadavg)"
