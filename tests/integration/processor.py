#!/usr/bin/python3
"""processor.py -- a sample third-party processor for subgate's integration tests.

A real HTTPS/1.1 server (stdlib ssl + http.server, one thread per connection)
that requires a client certificate signed by --client-ca, records every
request it receives as one JSON line in --record, and answers according to
a mode. The gateway strips headers it is not told to pass, so the mode is
not chosen by request headers: it comes from --mode, from the JSON control
file --control (re-read on every request, so a test can change the
behaviour without restarting and without dropping pooled connections), or
from a `_mode` query parameter (only reaches us if the gateway's policy
allows it). Precedence: query, control file, command line.

Modes:
  echo          200, JSON {"received": <parsed JSON body or null>, "method": M,
                "path": <path without query>, "query": {name: [values]}}
  reflect       200, the request body byte for byte (Content-Type of the request,
                else application/json)
  fixed         --status/--body/--body-file/--content-type as given
  slow          sleep --delay seconds, then as echo
  close         as echo, but no Content-Length: the body ends when we close
  chunked       as echo, Transfer-Encoding: chunked, in several chunks
  gzip          as echo, body gzip-compressed, Content-Encoding: gzip
  status=NNN    as echo with status NNN (no body for 1xx/204/304)
  drop          read the request, close without answering
  hang          read the request, never answer (until the client gives up)

Control-file keys: mode, delay, status, body (str or JSON value), body_b64,
content_type, headers ([[name, value], ...]), close_notify (false: end TLS
connections with a bare TCP close, a truncation as far as TLS can tell).

Record lines (one per request, flushed at once):
  {"seq", "time", "conn", "conn_seq", "sni", "method", "target", "path",
   "query", "version", "headers": [[name, value], ...], "body_b64", "body",
   "json", "client": {"subject": {...}, "san": [[type, value], ...]},
   "mode"}
"""

import argparse
import base64
import gzip
import http.server
import itertools
import json
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

MAX_BODY = 64 * 1024 * 1024

_seq = itertools.count(1)
_record_lock = threading.Lock()


def parse_args(argv):
	p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
	p.add_argument("--host", default="127.0.0.1")
	p.add_argument("--port", type=int, default=0, help="0: any free port (see --port-file)")
	p.add_argument("--port-file", help="write the bound port here once listening")
	p.add_argument("--cert", required=True)
	p.add_argument("--key", required=True)
	p.add_argument("--client-ca", required=True, help="CA that must sign the client certificate")
	p.add_argument("--record", help="append one JSON line per request here")
	p.add_argument("--control", help="JSON file re-read per request: {\"mode\":..., \"delay\":..., ...}")
	p.add_argument("--mode", default="echo")
	p.add_argument("--delay", type=float, default=2.0, help="seconds, for mode slow")
	p.add_argument("--status", type=int, default=200, help="for mode fixed")
	p.add_argument("--body", help="response body for mode fixed (text)")
	p.add_argument("--body-file", help="response body for mode fixed (file)")
	p.add_argument("--content-type", default="application/json")
	p.add_argument("--header", action="append", default=[],
		       help="extra response header 'Name: value' (repeatable)")
	p.add_argument("--tls-max", choices=["1.2", "1.3"], help="cap the TLS version")
	p.add_argument("--verbose", "-v", action="store_true")
	return p.parse_args(argv)


class Settings:
	"""The effective behaviour for one request."""

	def __init__(self, args):
		self.mode = args.mode
		self.delay = args.delay
		self.status = args.status
		self.body = None
		if args.body_file:
			with open(args.body_file, "rb") as f:
				self.body = f.read()
		elif args.body is not None:
			self.body = args.body.encode()
		self.content_type = args.content_type
		self.close_notify = True
		self.headers = [h.split(":", 1) for h in args.header]
		self.headers = [(n.strip(), v.strip()) for n, v in self.headers]

	def overlay(self, d):
		s = Settings.__new__(Settings)
		s.__dict__.update(self.__dict__)
		if "mode" in d:
			s.mode = d["mode"]
		if "delay" in d:
			s.delay = float(d["delay"])
		if "status" in d:
			s.status = int(d["status"])
		if "body" in d:
			b = d["body"]
			s.body = b.encode() if isinstance(b, str) else json.dumps(b).encode()
		if "body_b64" in d:
			s.body = base64.b64decode(d["body_b64"])
		if "content_type" in d:
			s.content_type = d["content_type"]
		if "close_notify" in d:
			s.close_notify = bool(d["close_notify"])
		if "headers" in d:
			s.headers = [tuple(h) for h in d["headers"]]
		return s


def peer_identity(sock):
	try:
		cert = sock.getpeercert()
	except (ValueError, OSError):
		return None
	if not cert:
		return None
	subject = {}
	for rdn in cert.get("subject", ()):
		for k, v in rdn:
			subject[k] = v
	return {"subject": subject, "san": [list(x) for x in cert.get("subjectAltName", ())]}


class Handler(http.server.BaseHTTPRequestHandler):
	protocol_version = "HTTP/1.1"
	server_version = "sample-processor/1"

	def version_string(self):
		return self.server_version

	def setup(self):
		super().setup()
		self.conn_seq = 0
		self.conn_id = "%s:%s" % self.client_address[:2]

	def log_message(self, fmt, *args):
		if self.server.verbose:
			sys.stdout.write("processor: %s %s\n" % (self.conn_id, fmt % args))
			sys.stdout.flush()

	# Every method goes through the same handler.
	def do_any(self):
		self.conn_seq += 1
		body, chunked = self.read_body()
		if body is None:
			return
		settings = self.server.settings_for(self.path)
		self.record(body, chunked, settings)
		self.respond(body, settings)

	do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_any

	def read_body(self):
		te = self.headers.get("Transfer-Encoding")
		if te is not None:
			if te.strip().lower() != "chunked":
				self.send_error(501, "unsupported transfer-encoding")
				return None, False
			out = bytearray()
			while True:
				line = self.rfile.readline(1024)
				if not line:
					self.close_connection = True
					return None, True
				size = int(line.split(b";", 1)[0].strip(), 16)
				if size == 0:
					while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
						pass
					return bytes(out), True
				out += self.rfile.read(size)
				self.rfile.readline(8)
				if len(out) > MAX_BODY:
					self.send_error(413)
					return None, True
		n = self.headers.get("Content-Length")
		if n is None:
			return b"", False
		n = int(n)
		if n > MAX_BODY:
			self.send_error(413)
			return None, False
		return self.rfile.read(n), False

	def record(self, body, chunked, settings):
		target = self.path
		u = urllib.parse.urlsplit(target)
		try:
			text = body.decode("utf-8")
		except UnicodeDecodeError:
			text = None
		try:
			parsed = json.loads(text) if text else None
		except ValueError:
			parsed = None
		rec = {
			"seq": next(_seq),
			"time": time.time(),
			"conn": self.conn_id,
			"conn_seq": self.conn_seq,
			"sni": getattr(self.connection, "sni_name", None),
			"method": self.command,
			"target": target,
			"path": u.path,
			"query": urllib.parse.parse_qs(u.query, keep_blank_values=True),
			"version": self.request_version,
			"headers": [[k, v] for k, v in self.headers.items()],
			"chunked": chunked,
			"body_b64": base64.b64encode(body).decode(),
			"body": text,
			"json": parsed,
			"client": peer_identity(self.connection),
			"mode": settings.mode,
		}
		self.server.write_record(rec)

	def echo_body(self, body):
		u = urllib.parse.urlsplit(self.path)
		try:
			parsed = json.loads(body) if body else None
		except ValueError:
			parsed = None
		return json.dumps({
			"received": parsed,
			"method": self.command,
			"path": u.path,
			"query": urllib.parse.parse_qs(u.query, keep_blank_values=True),
		}).encode()

	def respond(self, body, s):
		mode = s.mode
		status = 200
		ctype = s.content_type
		self.connection.close_notify = s.close_notify
		if mode == "drop":
			self.close_connection = True
			self.connection.close_notify = False
			self.connection.shutdown(socket.SHUT_RDWR)
			return
		if mode == "hang":
			time.sleep(3600)
			self.close_connection = True
			return
		if mode == "slow":
			time.sleep(s.delay)
		if mode == "reflect":
			out = body
			ctype = self.headers.get("Content-Type", "application/json")
		elif mode == "fixed":
			status = s.status
			out = s.body if s.body is not None else b""
		else:
			out = self.echo_body(body)
			ctype = "application/json"
		if mode.startswith("status="):
			status = int(mode.split("=", 1)[1])
		no_body = status < 200 or status in (204, 304)
		if mode == "gzip":
			out = gzip.compress(out)

		self.send_response(status)
		if not no_body:
			self.send_header("Content-Type", ctype)
		if mode == "gzip":
			self.send_header("Content-Encoding", "gzip")
		for n, v in s.headers:
			self.send_header(n, v)
		if no_body:
			self.end_headers()
			return
		if mode == "close":
			self.send_header("Connection", "close")
			self.end_headers()
			self.close_connection = True
			if self.command != "HEAD":
				self.wfile.write(out)
			return
		if mode == "chunked":
			self.send_header("Transfer-Encoding", "chunked")
			self.end_headers()
			if self.command != "HEAD":
				step = max(1, len(out) // 3)
				for i in range(0, len(out), step):
					part = out[i:i + step]
					self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
				self.wfile.write(b"0\r\n\r\n")
			return
		self.send_header("Content-Length", str(len(out)))
		self.end_headers()
		if self.command != "HEAD":
			self.wfile.write(out)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
	daemon_threads = True
	allow_reuse_address = True
	request_queue_size = 128

	def __init__(self, args):
		self.address_family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
		self.verbose = args.verbose
		self.base = Settings(args)
		self.control = args.control
		self.record_path = args.record
		self.ctx = make_context(args)
		super().__init__((args.host, args.port), Handler)

	def server_bind(self):
		if self.address_family == socket.AF_INET6:
			self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
		# Not HTTPServer.server_bind: its getfqdn() may wait for DNS.
		socketserver.TCPServer.server_bind(self)
		self.server_name = self.server_address[0]
		self.server_port = self.server_address[1]

	def shutdown_request(self, request):
		# End TLS properly (close_notify), so a close-delimited body is
		# complete, unless the mode asked for an abrupt end.
		if getattr(request, "close_notify", True):
			try:
				request.settimeout(1)
				request.unwrap()
			except (ssl.SSLError, OSError, ValueError):
				pass
		try:
			request.close()
		except OSError:
			pass

	def get_request(self):
		sock, addr = self.socket.accept()
		# Headers and body go out in separate writes: without this, Nagle
		# and delayed ACKs add ~40 ms to every response.
		sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
		# The handshake happens in the connection's thread (finish_request),
		# so a client that never finishes it cannot stall the accept loop.
		return self.ctx.wrap_socket(sock, server_side=True,
					    do_handshake_on_connect=False), addr

	def finish_request(self, request, client_address):
		request.settimeout(30)
		try:
			request.do_handshake()
		except (ssl.SSLError, OSError) as e:
			if self.verbose:
				sys.stdout.write("processor: %s:%s handshake failed: %s\n"
						 % (client_address[0], client_address[1], e))
				sys.stdout.flush()
			return
		request.settimeout(None)
		super().finish_request(request, client_address)

	def handle_error(self, request, client_address):
		if self.verbose:
			super().handle_error(request, client_address)

	def settings_for(self, target):
		s = self.base
		if self.control:
			try:
				with open(self.control) as f:
					s = s.overlay(json.load(f))
			except FileNotFoundError:
				pass
		q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
		if "_mode" in q:
			s = s.overlay({"mode": q["_mode"][-1]})
		return s

	def write_record(self, rec):
		line = json.dumps(rec, sort_keys=True)
		with _record_lock:
			if self.record_path:
				with open(self.record_path, "a") as f:
					f.write(line + "\n")
					f.flush()
			if self.verbose:
				show = rec["body"] if rec["body"] is not None else "<%d bytes>" % len(
					base64.b64decode(rec["body_b64"]))
				sys.stdout.write("processor: #%d %s %s %s (conn %s #%d, sni %s, client %s)\n"
						 % (rec["seq"], rec["method"], rec["target"], rec["version"],
						    rec["conn"], rec["conn_seq"], rec["sni"],
						    (rec["client"] or {}).get("san")))
				for k, v in rec["headers"]:
					sys.stdout.write("    %s: %s\n" % (k, v))
				sys.stdout.write("    body: %s\n" % show)
				sys.stdout.flush()


def make_context(args):
	ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
	ctx.minimum_version = ssl.TLSVersion.TLSv1_2
	if args.tls_max == "1.2":
		ctx.maximum_version = ssl.TLSVersion.TLSv1_2
	ctx.load_cert_chain(args.cert, args.key)
	ctx.load_verify_locations(cafile=args.client_ca)
	ctx.verify_mode = ssl.CERT_REQUIRED

	def on_sni(sock, name, _ctx):
		sock.sni_name = name

	ctx.sni_callback = on_sni
	return ctx


def main(argv):
	args = parse_args(argv)
	srv = Server(args)
	port = srv.server_address[1]
	if args.port_file:
		tmp = args.port_file + ".tmp"
		with open(tmp, "w") as f:
			f.write("%d\n" % port)
		os.rename(tmp, args.port_file)
	print("processor: listening on %s port %d mode %s" % (args.host, port, args.mode), flush=True)
	try:
		srv.serve_forever(poll_interval=0.2)
	except KeyboardInterrupt:
		pass
	return 0


if __name__ == "__main__":
	sys.exit(main(sys.argv[1:]))
