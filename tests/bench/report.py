#!/usr/bin/env python3
"""report.py -- turn scripts/bench.sh's raw output into the Markdown report and the bench line.

Reads WORK/results.tsv (one row per wrk run: workload, contender, conns, run, output file,
proxy CPU ticks, elapsed seconds), WORK/extra.tsv (ab, batch and mem rows), WORK/policy.txt,
WORK/audit.txt, WORK/tls.txt. Prints the report on stdout, ending with one line
"bench: key=value ..." a script can read; writes it to --results too when given.
"""

import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(path):
	"""rps, p50 ms, p99 ms, errors (non-2xx + socket errors), read errors, requests."""
	text = open(path).read()
	d = {"rps": 0.0, "p50": None, "p99": None, "errors": 0, "read_errors": 0, "requests": 0}
	m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
	if m:
		d["rps"] = float(m.group(1))
	for pct, key in (("50", "p50"), ("99", "p99")):
		m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m)\b" % pct, text, re.M)
		if m:
			d[key] = float(m.group(1)) * UNITS[m.group(2)]
	m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
	if m:
		d["errors"] += int(m.group(1))
	m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
	if m:
		d["errors"] += int(m.group(1)) + int(m.group(3)) + int(m.group(4))
		d["read_errors"] = int(m.group(2))
	m = re.search(r"^\s+(\d+) requests in", text, re.M)
	if m:
		d["requests"] = int(m.group(1))
	if "wrk exited" in text or not m:
		d["errors"] += 1
	return d


def med(xs):
	xs = [x for x in xs if x is not None]
	return statistics.median(xs) if xs else None


def fmt(x, nd=0):
	if x is None:
		return "n/a"
	return ("%%.%df" % nd) % x


def ratio(a, b):
	if a is None or b is None or b == 0:
		return None
	return a / b


def version(cmd):
	try:
		r = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
		return (r.stdout + r.stderr).strip().splitlines()[0]
	except (OSError, IndexError, subprocess.TimeoutExpired):
		return "?"


def main():
	ap = argparse.ArgumentParser()
	ap.add_argument("--work", required=True)
	ap.add_argument("--runs", type=int, required=True)
	ap.add_argument("--seconds", required=True)
	ap.add_argument("--conns", required=True)
	ap.add_argument("--machine", required=True)
	ap.add_argument("--fs", default="?")
	ap.add_argument("--quick", default="0")
	ap.add_argument("--results", default="")
	ap.add_argument("--load", default="")
	a = ap.parse_args()
	w = a.work
	conns = [int(c) for c in a.conns.split()]

	# case -> list of per-run dicts
	cases = {}
	for line in open(os.path.join(w, "results.tsv")):
		f = line.rstrip("\n").split("\t")
		if len(f) < 7 or f[0] == "batch":
			continue
		wl, n, c, run, path, ticks, el = f[0], f[1], int(f[2]), f[3], f[4], int(f[5]), float(f[6])
		d = parse_wrk(os.path.join(w, "runs", os.path.basename(path)))
		d["cpu"] = ticks / CLK_TCK / el if el > 0 else None
		d["load"] = float(f[7]) if len(f) > 7 and f[7] else None
		d["run"] = run
		cases.setdefault((wl, n, c), []).append(d)

	def stat(wl, n, c):
		runs = cases.get((wl, n, c))
		if not runs:
			return None
		rps = [r["rps"] for r in runs]
		return {
			"rps": med(rps), "min": min(rps), "max": max(rps),
			"p50": med([r["p50"] for r in runs]), "p99": med([r["p99"] for r in runs]),
			"cpu": med([r["cpu"] for r in runs]),
			"load": med([r["load"] for r in runs]),
			"errors": sum(r["errors"] for r in runs),
			"read_errors": sum(r["read_errors"] for r in runs),
			"requests": sum(r["requests"] for r in runs), "n": len(runs),
		}

	def per_round(wl, n, base_wl, base, c):
		"""The ratio within each interleaved round, sorted. The two runs of
		a round are seconds apart, so the machine's drift between rounds
		(here up to +-20%) cancels; a ratio of medians taken over all
		rounds can pair a fast round with a slow one."""
		a = {r["run"]: r["rps"] for r in cases.get((wl, n, c), [])}
		b = {r["run"]: r["rps"] for r in cases.get((base_wl, base, c), [])}
		return sorted(a[k] / b[k] for k in a if k in b and b[k])

	extra = {"ab": {}, "mem": {}, "batch": None}
	p = os.path.join(w, "extra.tsv")
	if os.path.exists(p):
		for line in open(p):
			f = line.rstrip("\n").split("\t")
			if f[0] == "ab" and len(f) >= 3 and f[2]:
				extra["ab"][f[1]] = float(f[2])
			elif f[0] == "mem" and len(f) >= 7:
				extra["mem"][(f[1], int(f[2]))] = tuple(int(x) for x in f[3:7])
			elif f[0] == "batch" and len(f) >= 4:
				try:
					extra["batch"] = (int(f[1]), int(f[2]), float(f[3]))
				except ValueError:
					pass

	policy = {}
	p = os.path.join(w, "policy.txt")
	if os.path.exists(p):
		for line in open(p):
			kv = dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
			if "doc" in kv:
				policy[(kv["doc"], kv["policy"])] = kv
	audit = {}
	p = os.path.join(w, "audit.txt")
	if os.path.exists(p):
		for line in open(p):
			f = line.split()
			if f and f[0].isdigit():
				# in-flight records/s unavailable mean_ms max_ms [cpu_us user_us]
				audit[int(f[0])] = (float(f[1]), int(f[2]), float(f[3]), float(f[4]),
						    float(f[5]) if len(f) > 5 else None,
						    float(f[6]) if len(f) > 6 else None)

	out = []
	now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
	out.append("# subgate benchmark results")
	out.append("")
	out.append("Produced by `make bench` (scripts/bench.sh)%s on %s." %
		   (" with BENCH_QUICK=1 (smoke run: not for decisions)" if a.quick == "1" else "", now))
	out.append("")
	out.append("- Machine: %s" % a.machine)
	if a.load:
		out.append("- Load average (1/5/15 min; other work on the machine shows here): %s" % a.load)
	out.append("- Software: %s; %s; %s; %s" % (
		version(["nginx", "-v"]), version(["haproxy", "-v"]), version(["wrk", "-v"]),
		version(["openssl", "version"])))
	tls = os.path.join(w, "tls.txt")
	if os.path.exists(tls):
		out.append("- Negotiated: " + "; ".join(l.strip() for l in open(tls) if l.strip()))
	out.append("- Method: %d interleaved runs of %s s per case (run 1 of every contender, then "
		   "run 2, ...), medians with min-max over runs; wrk -t1 with an LD_PRELOAD shim "
		   "for the client certificate; proxy pinned to core 0, upstream nginx and wrk to "
		   "core 1; one worker per proxy; ECDSA P-256 everywhere; client certificates "
		   "required and verified on both hops (CRL checked inbound); upstream keep-alive. "
		   "subgate's audit log is on (audit directory on %s, every call waits for its "
		   "fdatasync'ed disclosure record). `proxy CPU` is the proxy's CPU time over the "
		   "run's wall time (1.00 = core 0 saturated); `core 1 busy` the share of core 1 (upstream + "
		   "wrk) that was busy: near 1.00 with proxy CPU below 1.00 means the load side, not the "
		   "proxy, was the limit."
		   % (a.runs, a.seconds, a.fs))
	out.append("")

	labels = {"get": "1. keep-alive GET (1 KB response)",
		  "post": "2. keep-alive POST 2 KB JSON, pass-through (`**`)",
		  "full": "3. keep-alive POST 2 KB JSON, full policy",
		  "audit": "2b. POST pass-through, audit on tmpfs (no real fsync)",
		  "handshake": "4. new mTLS connection per request (no resumption)"}
	names = {"subgate": "subgate", "nginx": "nginx", "haproxy": "HAProxy",
		 "subgate-full": "subgate (full policy)", "subgate-shm": "subgate (audit on tmpfs)",
		 "nginx-default": "nginx (defaults: tickets on)"}
	out.append("`vs nginx` and `vs HAProxy`: the median over rounds of the ratio within each "
		   "round (see Targets).")
	out.append("")
	out.append("| workload | conns | contender | req/s median (min-max) | p50 ms | p99 ms "
		   "| proxy CPU | core 1 busy | errors | vs nginx | vs HAProxy |")
	out.append("|---|---|---|---|---|---|---|---|---|---|---|")
	rows = [("get", ["subgate", "nginx", "haproxy"], "get"),
		("post", ["subgate", "nginx", "haproxy"], "post"),
		("full", ["subgate-full"], "full"),
		("audit", ["subgate-shm"], "audit"),
		("handshake", ["subgate", "nginx", "haproxy", "nginx-default"], "handshake")]
	for label, contenders, wl in rows:
		for c in conns:
			base_wl = "post" if wl in ("full", "audit") else wl
			base_n = stat(base_wl, "nginx", c)
			base_h = stat(base_wl, "haproxy", c)
			for n in contenders:
				s = stat(wl, n, c)
				if s is None:
					continue
				rn = med(per_round(wl, n, base_wl, "nginx", c)) if base_n and n != "nginx" else None
				rh = med(per_round(wl, n, base_wl, "haproxy", c)) if base_h and n != "haproxy" else None
				err = str(s["errors"])
				if s["read_errors"] and wl != "handshake":
					err += " (+%d read)" % s["read_errors"]
				out.append("| %s | %d | %s | %s (%s-%s) | %s | %s | %s | %s | %s | %s | %s |" % (
					labels[label], c, names[n], fmt(s["rps"]), fmt(s["min"]), fmt(s["max"]),
					fmt(s["p50"], 2), fmt(s["p99"], 2), fmt(s["cpu"], 2), fmt(s["load"], 2), err,
					fmt(rn, 2) + "x" if rn else "", fmt(rh, 2) + "x" if rh else ""))
	out.append("")

	def r64(wl, n, base_wl, base):
		s, b = stat(wl, n, 64), stat(base_wl, base, 64)
		return ratio(s["rps"] if s else None, b["rps"] if b else None)

	# efficiency: requests per proxy CPU-second (independent of the shared load core)
	out.append("Requests per proxy CPU-second at 64 connections (throughput divided by the "
		   "proxy's CPU use; less sensitive to the load generator sharing core 1):")
	out.append("")
	out.append("| workload | subgate | nginx | HAProxy | subgate full policy |")
	out.append("|---|---|---|---|---|")
	for wl in ("get", "post", "handshake"):
		vals = []
		for wl2, n in ((wl, "subgate"), (wl, "nginx"), (wl, "haproxy"),
			       ("full" if wl == "post" else "", "subgate-full")):
			s = stat(wl2, n, 64)
			vals.append(fmt(s["rps"] / s["cpu"]) if s and s["cpu"] else "")
		out.append("| %s | %s |" % (wl, " | ".join(vals)))
	out.append("")

	# audit cost
	sg, shm = stat("post", "subgate", 64), stat("audit", "subgate-shm", 64)
	out.append("## Audit log cost (workload 2, 64 connections)")
	out.append("")
	if sg and shm:
		out.append("| audit directory | req/s | p50 ms | p99 ms |")
		out.append("|---|---|---|---|")
		out.append("| disk (%s, fdatasync) | %s | %s | %s |" % (a.fs, fmt(sg["rps"]), fmt(sg["p50"], 2), fmt(sg["p99"], 2)))
		out.append("| tmpfs (/dev/shm) | %s | %s | %s |" % (fmt(shm["rps"]), fmt(shm["p50"], 2), fmt(shm["p99"], 2)))
		if sg["p50"] is not None and shm["p50"] is not None:
			out.append("")
			out.append("Latency the syncs add: p50 %+.2f ms, p99 %+.2f ms; throughput %s of tmpfs." % (
				sg["p50"] - shm["p50"], sg["p99"] - shm["p99"], fmt(med(per_round("post", "subgate", "audit", "subgate-shm", 64)), 2) + "x"))
	b = extra["batch"]
	out.append("")
	if b and b[0] > 0 and b[2] > 0:
		fs, rec, dur = b
		out.append("Group commit, from subgate's /metrics over one extra %s s POST run at 64 "
			   "connections: %d records made durable (`subgate_audit_records_total`) by %d "
			   "fdatasyncs (`subgate_audit_syncs_total`): mean batch %.1f records per fdatasync, "
			   "%.0f fdatasync/s (a call writes a disclosure and an outcome record)." % (
				   fmt(dur, 1), rec, fs, rec / fs, fs / dur))
	else:
		out.append("Group commit: the audit counters at /metrics could not be read in this run.")
	out.append("")

	# memory
	out.append("## Memory per idle mTLS connection")
	out.append("")
	out.append("Fresh proxy, RSS (all its processes: nginx master+worker, subgate main+audit) "
		   "before and after N connections each made one GET and stayed open; "
		   "(RSS_N - RSS_0) / connections open.")
	out.append("")
	out.append("| N | contender | RSS_0 KiB | RSS_N KiB | per conn KiB | open ok | errors |")
	out.append("|---|---|---|---|---|---|---|")
	idle = {}
	for (n, N), (r0, r1, ok, errs) in sorted(extra["mem"].items(), key=lambda x: (x[0][1], x[0][0])):
		per = (r1 - r0) / ok if ok else None
		idle[(n, N)] = per
		out.append("| %d | %s | %d | %d | %s | %d | %d |" % (N, names.get(n, n), r0, r1, fmt(per, 2), ok, errs))
	out.append("")

	# micro
	out.append("## Policy engine and audit writer alone")
	out.append("")
	if policy:
		out.append("Single thread pinned to core 0, in 50 ms slices: the median slice (the "
			   "figure the target and the bench line use) and the fastest (other work on "
			   "the machine only ever slows a slice down).")
		out.append("")
		out.append("| document | policy | bytes | docs/s | MB/s | fastest slice MB/s |")
		out.append("|---|---|---|---|---|---|")
		for (doc, pol), kv in sorted(policy.items()):
			out.append("| %s | %s | %s | %s | %s | %s |" % (doc, pol, kv["bytes"], kv["docs_s"], kv["mb_s"],
								 kv.get("mb_s_best", "-")))
		out.append("")
	if audit:
		out.append("| concurrent submitters | records/s | unavailable | mean latency ms | max latency ms "
			   "| audit process CPU us/record | of it user us/record |")
		out.append("|---|---|---|---|---|---|---|")
		for k in sorted(audit):
			v = audit[k]
			out.append("| %d | %.0f | %d | %.2f | %.2f | %s | %s |" % (
				k, v[0], v[1], v[2], v[3], "-" if v[4] is None else "%.2f" % v[4],
				"-" if v[5] is None else "%.2f" % v[5]))
		out.append("")

	ab = extra["ab"]
	if ab:
		out.append("Cross-check with ab (keep-alive GET, 64 concurrent, HTTP/1.0): " + ", ".join(
			"%s %s req/s" % (names[n], fmt(v)) for n, v in ab.items()) + ".")
		out.append("")

	# bench line and targets
	ratios = {
		"get_vs_nginx": ("get", "subgate", "get", "nginx"),
		"get_vs_haproxy": ("get", "subgate", "get", "haproxy"),
		"post_vs_nginx": ("post", "subgate", "post", "nginx"),
		"post_vs_haproxy": ("post", "subgate", "post", "haproxy"),
		"policy_vs_pass": ("full", "subgate-full", "post", "subgate"),
		"policy_vs_nginx": ("full", "subgate-full", "post", "nginx"),
		"handshake_vs_nginx": ("handshake", "subgate", "handshake", "nginx"),
	}
	pairs = {k: per_round(*v, 64) for k, v in ratios.items()}

	mem = extra["mem"]
	sg10 = mem.get(("subgate", 10000))
	kv = [(k, med(rs)) for k, rs in pairs.items()] + [
		("idle_kib", idle.get(("subgate", 10000))),
		("nginx_idle_kib", idle.get(("nginx", 10000))),
		("conns_10k_errors", sg10[3] if sg10 else None),
		("policy_mb_s", float(policy[("2k", "full")]["mb_s"]) if ("2k", "full") in policy else None),
		("audit_records_s", audit[64][0] if 64 in audit else None),
	]
	d = dict(kv)

	def spread(k):
		rs = pairs[k]
		return "%.2f-%.2f" % (rs[0], rs[-1]) if rs else "n/a"

	def of_medians(k):
		return fmt(r64(*ratios[k]), 2) + "x"

	def tgt(name, val, ok, *keys):
		return "| %s | %s | %s | %s | %s |" % (
			name, val, " / ".join(spread(k) for k in keys) or "-",
			" / ".join(of_medians(k) for k in keys) or "-", "met" if ok else "**not met**")

	def ge(x, y):
		return x is not None and x >= y

	out.append("## Targets")
	out.append("")
	out.append("A ratio is taken within each interleaved round (its two runs are seconds "
		   "apart, so drift between rounds cancels); measured is the median over rounds, "
		   "as in the bench line, with the rounds' min-max beside it. For comparison, the "
		   "ratio of the medians of the table above, which can pair a fast round with a "
		   "slow one.")
	out.append("")
	out.append("| target | measured (median per round) | rounds min-max | ratio of medians | |")
	out.append("|---|---|---|---|---|")
	out.append(tgt("keep-alive GET >= 1.10x nginx and HAProxy", "%sx / %sx" % (fmt(d["get_vs_nginx"], 2), fmt(d["get_vs_haproxy"], 2)),
		       ge(d["get_vs_nginx"], 1.10) and ge(d["get_vs_haproxy"], 1.10),
		       "get_vs_nginx", "get_vs_haproxy"))
	out.append(tgt("pass-through POST >= 1.10x nginx and HAProxy", "%sx / %sx" % (fmt(d["post_vs_nginx"], 2), fmt(d["post_vs_haproxy"], 2)),
		       ge(d["post_vs_nginx"], 1.10) and ge(d["post_vs_haproxy"], 1.10),
		       "post_vs_nginx", "post_vs_haproxy"))
	out.append(tgt("full policy >= 0.80x own pass-through", fmt(d["policy_vs_pass"], 2) + "x", ge(d["policy_vs_pass"], 0.80),
		       "policy_vs_pass"))
	out.append(tgt("full policy >= 0.90x nginx pass-through", fmt(d["policy_vs_nginx"], 2) + "x", ge(d["policy_vs_nginx"], 0.90),
		       "policy_vs_nginx"))
	out.append(tgt("handshakes >= 1.0x nginx", fmt(d["handshake_vs_nginx"], 2) + "x", ge(d["handshake_vs_nginx"], 1.0),
		       "handshake_vs_nginx"))
	out.append(tgt("idle connection memory <= nginx's", "%s KiB vs %s KiB" % (fmt(d["idle_kib"], 2), fmt(d["nginx_idle_kib"], 2)),
		       d["idle_kib"] is not None and d["nginx_idle_kib"] is not None and d["idle_kib"] <= d["nginx_idle_kib"]))
	out.append(tgt("10,000 connections without error", "%s errors" % fmt(d["conns_10k_errors"]),
		       d["conns_10k_errors"] == 0 and sg10 is not None and sg10[2] == 10000))
	out.append(tgt("policy engine >= 300 MB/s on the 2 KB doc", "%s MB/s" % fmt(d["policy_mb_s"], 1), ge(d["policy_mb_s"], 300)))
	out.append("")
	line = "bench: " + " ".join("%s=%s" % (k, ("%.2f" % v if isinstance(v, float) else
					   ("n/a" if v is None else str(v)))) for k, v in kv)
	out.append("```")
	out.append(line)
	out.append("```")
	text = "\n".join(out) + "\n"
	if a.results:
		with open(a.results, "w") as f:
			f.write(text)
	sys.stdout.write(text)
	print(line)


if __name__ == "__main__":
	main()
