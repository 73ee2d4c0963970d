"""test_gateway_demo.py -- scripts/demo.sh runs from the repository root and shows both sides of a call."""

import os
import re
import shutil

import pytest

import util

PORTS = (8443, 9901, 9444, 9445)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def demo():
	busy = [p for p in PORTS if util.port_listening(p)]
	if busy:
		pytest.skip("demo.sh needs ports %s free; in use: %s" % (PORTS, busy))
	if shutil.which("curl") is None:
		pytest.skip("demo.sh needs curl")
	r = util.run(["bash", str(util.REPO / "scripts" / "demo.sh")], cwd=util.REPO, check=False,
		     timeout=90)
	out = ANSI.sub("", r.stdout + r.stderr)
	if r.returncode != 0 and re.search(r"port \d+ on 127\.0\.0\.1 is in use", out):
		pytest.skip("a demo port became busy while starting: %s" % out.strip().splitlines()[-1])
	return r.returncode, out


@pytest.mark.timeout(100)
def test_demo_exits_zero(demo):
	rc, out = demo
	assert rc == 0, out
	assert "demo: done" in out


def sides(out):
	left, right = [], []
	for ln in out.splitlines():
		if "| " in ln:
			a, _, b = ln.partition("| ")
			left.append(a.rstrip())
			right.append(b)
	return "\n".join(left), "\n".join(right)


def test_demo_prints_both_sides(demo):
	rc, out = demo
	left, right = sides(out)
	assert "what the service sent" in left and "what the processor received" in right, out
	# The service's side: everything it sent.
	for s in ("POST /crm/v1/contacts", "X-Debug-User: maria", "maria.gonzalez@example.net",
		  "penicillin", "4111 1111 1111 1111", "x_internal_score"):
		assert s in left, s
	# The processor's side: the rebuilt call, the injected credential
	# (hidden), only allowlisted fields.
	for s in ("POST /v1/contacts", "Host: crm.processor.test", "Accept-Encoding: identity",
		  "Authorization: <secret from conf/secrets>", '"first_name": "Maria"'):
		assert s in right, s
	# Values that are dropped, tokenised, hashed or masked never show as
	# they were sent.
	for s in ("X-Debug-User", "maria.gonzalez@example.net", "penicillin", "4111 1111 1111 1111",
		  "transcript", "x_internal_score", "pension", "+14155550142", "(415) 555-0142",
		  "new-lead", "/crm/"):
		assert s not in right, "%r reached the processor side:\n%s" % (s, right)


def test_demo_shows_refusals(demo):
	rc, out = demo
	assert '"code":"endpoint_not_allowed"' in out
	assert "without a tenant certificate" in out


def test_demo_log_has_no_values_or_secret(demo):
	rc, out = demo
	log = [ln for ln in out.splitlines() if "msg=request" in ln]
	assert len(log) >= 2, out
	assert any("endpoint=\"/v1/contacts\"" in ln and "status=200" in ln for ln in log), log
	for ln in log:
		for s in ("Maria", "Gonzalez", "maria", "penicillin", "/contacts/42"):
			assert s not in ln.replace("demo-call-1", ""), ln
	tok = util.REPO / "conf" / "secrets" / "crm.token"
	if tok.exists() and os.access(tok, os.R_OK):
		secret = tok.read_text().strip()
		assert secret and secret not in out
		assert secret.split()[-1] not in out
