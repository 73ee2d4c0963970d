"""test_policy_tools.py -- subgatectl policy explain / diff: exact output against golden files.

Each case runs build/subgatectl from the repository root (config paths in
messages are then the ones written here) and compares stdout, stderr and
the exit status byte for byte with fixtures/policy/golden/NAME.{out,err,rc}.
Regenerate after an intended change with SUBGATE_UPDATE_GOLDEN=1 and review
the diff of the golden files like any other change. SUBGATECTL=PATH runs
another build (an ASan one, say) against the same goldens.
"""

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CTL = os.environ.get('SUBGATECTL', os.path.join(ROOT, 'build', 'subgatectl'))
FIX = "tests/integration/fixtures/policy"
GOLDEN = os.path.join(ROOT, FIX, "golden")
UPDATE = os.environ.get("SUBGATE_UPDATE_GOLDEN") == "1"

EX = "conf/subgate.conf"
FULL = FIX + "/full.conf"


def explain(*args):
	return ["policy", "explain"] + list(args)


# name, argv after "subgatectl", stdin (bytes or None)
CASES = [
	# --- explain on the example config
	("explain-example-contacts", explain(
		"-c", EX, "--integration", "crm", "--method", "POST", "--path", "/v1/contacts",
		"--header", "Content-Type: application/json", "--header", "Accept: application/json",
		"--header", "Cookie: session=abc", "--header", "X-Request-Id: req-0001",
		FIX + "/example-contact.json"), None),
	("explain-example-get-globex", explain(
		"-c", EX, "--integration", "crm", "--tenant", "globex", "--method", "GET",
		"--path", "/v1/contacts/c-42?fields=name,email&debug=1&fields=phone",
		"--header", "X-Request-Id: not a valid id!"), None),
	("explain-example-calendar", explain(
		"-c", EX, "--integration", "calendar", "--method", "POST", "--path", "/v3/events",
		"--header", "X-Request-Id: not a valid id!", FIX + "/example-event.json"), None),
	# --- explain on the fuller config
	("explain-full-contacts", explain(
		"-c", FULL, "--integration", "crm", "--method", "POST", "--path", "/v1/contacts",
		"--header", "Content-Type: application/json", "--header", "X-Request-Id: req-42",
		"--header", "X-Trace: abc", "--header", "Cookie: sid=1", FIX + "/contact.json"), None),
	("explain-full-form", explain(
		"-c", FULL, "--integration", "crm", "--tenant", "globex", "--method", "POST",
		"--path", "/v1/forms/signup",
		"--header", "Content-Type: application/x-www-form-urlencoded", FIX + "/form.txt"), None),
	("explain-full-params-query", explain(
		"-c", FULL, "--integration", "crm", "--method", "GET",
		"--path", "/v1/contacts/c-1234/notes/n%207?fields=name&email=a%40b.c&phone=5550100199"
		"&phone=123&ref=R1&card=4111111111111111&limit=5&secret=x&limit"), None),
	("explain-full-specific-endpoint", explain(
		"-c", FULL, "--integration", "crm", "--method", "GET",
		"--path", "/v1/contacts/search?q=ada&page=2"), None),
	("explain-full-dstar-stdin", explain(
		"-c", FULL, "--integration", "calendar", "--method", "POST", "--path", "/v3/events",
		"-"), open(os.path.join(ROOT, FIX, "event-dstar.json"), "rb").read()),
	# --- explain errors: exit 2, one clear line
	("explain-err-integration", explain(
		"-c", FULL, "--integration", "nope", "--method", "GET", "--path", "/x"), None),
	("explain-err-endpoint", explain(
		"-c", FULL, "--integration", "crm", "--method", "DELETE", "--path", "/v1/contacts"), None),
	("explain-err-json", explain(
		"-c", FULL, "--integration", "crm", "--method", "POST", "--path", "/v1/contacts", "-"),
	 b'{"contact": {"email": "a@b.c", "email": "dup"}}'),
	("explain-err-tenant", explain(
		"-c", FULL, "--integration", "calendar", "--tenant", "globex", "--method", "POST",
		"--path", "/v3/events"), None),
	("explain-err-path", explain(
		"-c", FULL, "--integration", "crm", "--method", "GET", "--path", "/v1/%2e%2e/x"), None),
	("explain-err-media-type", explain(
		"-c", FULL, "--integration", "crm", "--method", "POST", "--path", "/v1/contacts",
		"--header", "Content-Type: text/plain", "-"), b"a=1"),
	("explain-full-param-fp", explain(
		"-c", FULL, "--integration", "crm", "--method", "GET",
		"--path", "/v1/calls/+1%20555%20010%200199"), None),
	("explain-err-param-refused", explain(
		"-c", FULL, "--integration", "crm", "--method", "GET",
		"--path", "/v1/calls/12345"), None),
	("explain-err-path-utf8", explain(
		"-c", FULL, "--integration", "crm", "--method", "GET",
		"--path", "/v1/contacts/%FF/notes/n"), None),
	# --- diff
	("diff-example-same", ["policy", "diff", EX, EX], None),
	("diff-full-looser", ["policy", "diff", FULL, FIX + "/full-looser.conf"], None),
	("diff-full-looser-reversed", ["policy", "diff", FIX + "/full-looser.conf", FULL], None),
	("diff-full-tighter", ["policy", "diff", FULL, FIX + "/full-tighter.conf"], None),
	("diff-full-reordered", ["policy", "diff", FULL, FIX + "/full-reordered.conf"], None),
	("diff-err-broken", ["policy", "diff", FULL, FIX + "/broken.conf"], None),
	("diff-err-missing", ["policy", "diff", FIX + "/no-such.conf", FULL], None),
	("diff-err-usage", ["policy", "diff", FULL], None),
]

# Exit statuses the contract fixes (the goldens hold them too).
EXPECTED_RC = {
	"diff-example-same": 0, "diff-full-looser": 1, "diff-full-looser-reversed": 1,
	"diff-full-tighter": 0, "diff-full-reordered": 0, "diff-err-broken": 2,
	"diff-err-missing": 2, "diff-err-usage": 2,
}


def run_ctl(argv, stdin):
	p = subprocess.run([CTL] + argv, cwd=ROOT, input=stdin if stdin is not None else b"",
			   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
	return p.returncode, p.stdout, p.stderr


def golden(name, ext):
	return os.path.join(GOLDEN, name + "." + ext)


@pytest.mark.parametrize("name,argv,stdin", CASES, ids=[c[0] for c in CASES])
def test_golden(name, argv, stdin):
	rc, out, err = run_ctl(argv, stdin)
	if UPDATE:
		os.makedirs(GOLDEN, exist_ok=True)
		for ext, data in (("out", out), ("err", err), ("rc", b"%d\n" % rc)):
			with open(golden(name, ext), "wb") as f:
				f.write(data)
	with open(golden(name, "rc"), "rb") as f:
		want_rc = int(f.read())
	with open(golden(name, "out"), "rb") as f:
		want_out = f.read()
	with open(golden(name, "err"), "rb") as f:
		want_err = f.read()
	assert rc == want_rc, err.decode(errors="replace")
	assert out == want_out
	assert err == want_err
	if name in EXPECTED_RC:
		assert rc == EXPECTED_RC[name]
	if name.startswith("explain-err"):
		assert rc == 2 and out == b"" and err.count(b"\n") == 1
	elif name.startswith("explain"):
		assert rc == 0 and err == b""


def test_explain_reproducible_and_says_so():
	argv = CASES[3][1]
	a = run_ctl(argv, None)
	b = run_ctl(argv, None)
	assert a == b and a[0] == 0
	assert b"PUBLIC throw-away keys" in a[1]


def test_explain_never_reads_secret_files(tmp_path):
	"""Secret header values are shown by file name only; the file is never opened."""
	secret = tmp_path / "crm.token"
	secret.write_text("Bearer SECRET-CANARY-VALUE\n")
	os.chmod(secret, 0o600)
	conf = open(os.path.join(ROOT, FULL)).read().replace(
		'"secrets/crm.token"', '"%s"' % secret)
	cpath = tmp_path / "c.conf"
	cpath.write_text(conf)
	rc, out, err = run_ctl(explain("-c", str(cpath), "--integration", "crm", "--method",
				       "GET", "--path", "/v1/contacts/search"), None)
	assert rc == 0, err
	assert b"SECRET-CANARY" not in out + err
	assert ("Authorization: <secret from %s>\r\n" % secret).encode() in out
	# an unreadable secret file does not matter either
	os.chmod(secret, 0)
	rc2, out2, _ = run_ctl(explain("-c", str(cpath), "--integration", "crm", "--method",
					"GET", "--path", "/v1/contacts/search"), None)
	assert rc2 == 0 and out2 == out


def test_explain_request_matches_content_length():
	"""The request printed is well-framed: Content-Length is the body's length."""
	rc, out, _ = run_ctl(CASES[3][1], None)
	assert rc == 0
	start = out.index(b"==\n") + 3
	end = out.index(b"\n== end of request ==")
	req = out[start:end]
	head, body = req.split(b"\r\n\r\n", 1)
	cl = [l for l in head.split(b"\r\n") if l.startswith(b"Content-Length: ")]
	assert len(cl) == 1 and int(cl[0].split(b": ")[1]) == len(body)
	for canary in (b"ada@example.com", b"078-05-1120", b"Lovelace", b"5550100199"):
		assert canary not in req


def test_diff_exit_gates_on_one_change(tmp_path):
	"""A single loosened rule is enough for exit 1; the reverse alone exits 0."""
	conf = open(os.path.join(ROOT, FULL)).read()
	loose = conf.replace('mask            = [ "contact.card_number" ];',
			     'mask            = [ ];', 1).replace(
		'allow           = [ "contact.first_name",',
		'allow           = [ "contact.card_number", "contact.first_name",', 1)
	assert loose.count("contact.card_number") == conf.count("contact.card_number")
	a = tmp_path / "a.conf"
	b = tmp_path / "b.conf"
	a.write_text(conf)
	b.write_text(loose)
	rc, out, err = run_ctl(["policy", "diff", str(a), str(b)], None)
	assert rc == 1, err
	assert out == (b"integrations[crm].endpoints[POST /v1/contacts].request: "
		       b"contact.card_number: mask -> allow (more visible)\n"
		       b"1 more visible, 0 less visible, 0 other changes\n")
	rc, out, err = run_ctl(["policy", "diff", str(b), str(a)], None)
	assert rc == 0, err
	assert b"contact.card_number: allow -> mask (less visible)\n" in out
	# an unreadable file is an error, not "no change"
	os.chmod(b, 0)
	if os.geteuid() != 0:
		rc, out, err = run_ctl(["policy", "diff", str(a), str(b)], None)
		assert rc == 2
