"""conftest.py -- pytest fixtures that run subgate and sample processors as real processes.

Fixtures (see util.py for the classes they return):
  pki             session: a PKI from scripts/gen-dev-pki.sh in a temporary directory
  processor       factory: processor(mode="echo", **kw) -> started util.Processor
  gateway_config  factory: gateway_config(crm=None, calendar=None, keys="auto", **kw) -> Config
  gateway         factory: gateway(cfg=None, *, crm=None, calendar=None, keys="auto",
                           start=True, wait=True, **kw) -> util.Gateway
  client          util-bound helper: client.request(gw, ...), client.connect(gw, ...), ...
A per-test alarm (120 s, @pytest.mark.timeout(N) to change) fails a hung test.
When a test fails, the logs of the gateways and processors it started are
attached to the report.
"""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import util  # noqa: E402
from util import Gateway, HarnessError, Processor  # noqa: E402

DEFAULT_TIMEOUT = int(os.environ.get("SUBGATE_TEST_TIMEOUT", "120"))


# --------------------------------------------------------------------------
# per-test alarm

@pytest.fixture(autouse=True)
def _alarm(request):
	m = request.node.get_closest_marker("timeout")
	seconds = int(m.args[0]) if m and m.args else DEFAULT_TIMEOUT

	def expired(signum, frame):
		pytest.fail("test exceeded its %d s time limit" % seconds, pytrace=True)

	old = signal.signal(signal.SIGALRM, expired)
	signal.alarm(seconds)
	yield
	signal.alarm(0)
	signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------
# logs on failure

def _register(request, obj):
	"""Attach obj (with .describe() -> (title, text)) to the running test's report."""
	reg = getattr(request.node, "_subgate_harness", None)
	if reg is None:
		reg = request.node._subgate_harness = []
	reg.append(obj)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
	outcome = yield
	rep = outcome.get_result()
	if not rep.failed:
		return
	for obj in getattr(item, "_subgate_harness", ()):
		try:
			title, text = obj.describe()
		except Exception as e:  # a broken describe() must not hide the failure
			title, text = repr(obj), "describe() failed: %r" % e
		if len(text) > 60000:
			text = "[... %d bytes cut ...]\n%s" % (len(text) - 60000, text[-60000:])
		rep.sections.append((title, text or "(empty)"))


# --------------------------------------------------------------------------
# PKI

@pytest.fixture(scope="session")
def pki(tmp_path_factory):
	"""util.PKI for a fresh gen-dev-pki.sh run (once per session)."""
	return util.gen_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def _session_dir(tmp_path_factory):
	return tmp_path_factory.mktemp("session")


# --------------------------------------------------------------------------
# processors

@pytest.fixture
def processor(request, pki, tmp_path):
	"""Factory: processor(mode="echo", *, cert="processor",
	client_ca="gateway-client-ca", host="127.0.0.1", port=0, delay=2.0,
	status=None, body=None, content_type=None, headers=(), tls_max=None,
	args=(), start=True) -> util.Processor (started unless start=False).
	All are stopped at teardown."""
	started = []

	def make(mode="echo", start=True, **kw):
		p = Processor(pki, tmp_path / ("processor%d" % (len(started) + 1)), mode=mode, **kw)
		started.append(p)
		_register(request, p)
		if start:
			p.start()
		return p

	yield make
	for p in started:
		p.stop()


# --------------------------------------------------------------------------
# gateway config and gateway

class Config(dict):
	"""A config dict; .processors maps integration name -> util.Processor
	started for it (if any), .keys_dir is the key directory or None,
	.full_policy says whether the tokenize/format_preserve/hash/mask rules
	are in it."""
	processors = None
	keys_dir = None
	full_policy = False


def _keys(keys, workdir, session_dir):
	"""keys="auto": init keys if build/subgatectl supports it; True: must;
	False/None: none; a dict: used as the keys group."""
	if isinstance(keys, dict):
		return keys
	if keys == "auto":
		keys = util.keys_supported(session_dir)
	if not keys:
		return None
	return util.keys_init(workdir / "keys")


@pytest.fixture
def gateway_config(processor, pki, tmp_path, _session_dir):
	"""Factory: gateway_config(crm=None, calendar=None, keys="auto", *,
	listen_port=None, admin_port=None, host="127.0.0.1", full_policy=None)
	-> Config (a dict; see util.make_config for its content).

	crm/calendar: a util.Processor or an upstream URL; crm=None starts an
	echo processor, calendar=None uses crm's. keys: "auto" (keys and audit
	when build/subgatectl implements `keys init`), True, False, or a keys
	group dict. full_policy=None (default): the non-allow rules are included
	when there are keys and build/subgate implements their actions (probed
	once per session with `subgate -t`); True/False forces it."""
	n = [0]

	def make(crm=None, calendar=None, keys="auto", **kw):
		n[0] += 1
		workdir = tmp_path / ("config%d" % n[0])
		workdir.mkdir()
		procs = {}
		if crm is None:
			crm = processor()
		if isinstance(crm, Processor):
			procs["crm"] = crm
			crm = crm.url
		if isinstance(calendar, Processor):
			procs["calendar"] = calendar
			calendar = calendar.url
		elif calendar is None and "crm" in procs:
			procs["calendar"] = procs["crm"]
		k = _keys(keys, workdir, _session_dir)
		full = kw.pop("full_policy", None)
		if full is None and k is not None:
			probe = util.make_config(pki, workdir, crm, calendar, keys=k, full_policy=True, **kw)
			full = util.full_policy_supported(probe, workdir)
		cfg = Config(util.make_config(pki, workdir, crm, calendar, keys=k, full_policy=full,
					      **kw))
		cfg.processors = procs
		cfg.keys_dir = os.path.dirname(k["token_keys"]) if k else None
		cfg.full_policy = bool(full)
		return cfg

	return make


@pytest.fixture
def gateway(request, pki, tmp_path, gateway_config):
	"""Factory: gateway(cfg=None, *, crm=None, calendar=None, keys="auto",
	start=True, wait=True, binary=util.SUBGATE, **make_config_kw) -> util.Gateway.

	cfg None: gateway_config(crm, calendar, keys, **make_config_kw). The
	gateway is started (and waited for: listen port + /healthz) unless
	start=False. Teardown: SIGTERM, wait grace+5 s, SIGKILL; then the test
	errors if the log has a sanitizer report, or the gateway crashed on a
	signal or needed SIGKILL (unless gw.expect_crash is set)."""
	made = []

	def make(cfg=None, crm=None, calendar=None, keys="auto", start=True, wait=True,
		 binary=util.SUBGATE, **kw):
		if cfg is None:
			cfg = gateway_config(crm=crm, calendar=calendar, keys=keys, **kw)
		gw = Gateway(pki, tmp_path / ("gateway%d" % (len(made) + 1)), cfg, binary=binary,
			     name="subgate#%d" % (len(made) + 1))
		gw.processors = dict(getattr(cfg, "processors", None) or {})
		made.append(gw)
		_register(request, gw)
		if start:
			gw.start(wait=wait)
		return gw

	yield make

	problems = []
	for gw in made:
		was_running = gw.running
		rc = gw.stop()
		if gw.expect_crash:
			continue
		san = gw.sanitizer_report()
		if san:
			problems.append("%s: sanitizer report in the log:\n%s" % (gw.name, san))
		if rc is not None and rc < 0 and rc != -signal.SIGTERM:
			if rc == -signal.SIGKILL and was_running:
				problems.append("%s did not exit after SIGTERM; killed" % gw.name)
			elif rc != -signal.SIGKILL:
				problems.append("%s died on signal %d" % (gw.name, -rc))
	if problems:
		pytest.fail("\n".join(problems), pytrace=False)


# --------------------------------------------------------------------------
# client

class Client:
	"""Client helpers bound to the session PKI. gw: a util.Gateway or a
	(host, port) pair; cert: a PKI base name ("tenant-acme"), a (crt, key)
	pair, or None for no client certificate."""

	def __init__(self, pki):
		self.pki = pki

	@staticmethod
	def _addr(gw):
		return (gw.host, gw.port) if isinstance(gw, Gateway) else tuple(gw)

	def context(self, cert="tenant-acme", **kw):
		"""util.client_context: trusts gateway-ca unless ca= is given; kw:
		ca, min_version, max_version, ciphers."""
		return util.client_context(self.pki, cert, **kw)

	def connect(self, gw, cert="tenant-acme", server_hostname=util.GATEWAY_NAME,
		    timeout=10.0, **kw):
		"""A kept-alive util.Conn; conn.request(method, path, body=None,
		json=None, headers=None) -> util.Response."""
		host, port = self._addr(gw)
		return util.Conn(host, port, self.context(cert, **kw), server_hostname, timeout)

	def request(self, gw, method, path, body=None, json=None, headers=None,
		    cert="tenant-acme", timeout=10.0, **kw):
		"""One request on a fresh connection -> util.Response."""
		with self.connect(gw, cert, timeout=timeout, **kw) as c:
			return c.request(method, path, body=body, json=json, headers=headers)

	def raw(self, gw, data, cert="tenant-acme", timeout=5.0, chunks=None, pause=0.0,
		server_hostname=util.GATEWAY_NAME, **kw):
		"""Send exact bytes over TLS, read until close or timeout -> util.RawReply."""
		host, port = self._addr(gw)
		return util.raw_exchange(host, port, self.context(cert, **kw), data,
					 server_hostname=server_hostname, timeout=timeout,
					 chunks=chunks, pause=pause)


@pytest.fixture
def client(pki):
	return Client(pki)


__all__ = ["Config", "Client", "HarnessError"]
