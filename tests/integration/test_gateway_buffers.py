"""test_gateway_buffers.py -- max_buffered_bytes bounds what a worker holds: request bodies and
processor responses waiting for the client."""

import json


def test_response_over_worker_buffer_limit_is_refused(gateway, processor):
	big = json.dumps({"contact": {"first_name": "x" * 20000}})
	proc = processor("fixed", body=big)
	gw = gateway(crm=proc, start=False)
	gw.cfg["limits"]["max_buffered_bytes"] = 8192
	gw.write_config()
	gw.start()
	r = gw.request("GET", "/crm/v1/contacts/1")
	assert r.status == 503, r
	assert r.error_code == "overloaded", r.body
	# The processor did answer: the limit is about what subgate holds.
	assert len(proc.wait_records(1)) == 1
	# A small answer still passes under the same limit.
	proc.set_mode("fixed", body=json.dumps({"ok": True}))
	r = gw.request("GET", "/crm/v1/contacts/1")
	assert r.status == 200, r


def test_request_body_over_worker_buffer_limit_is_refused(gateway, processor):
	proc = processor("echo")
	gw = gateway(crm=proc, start=False)
	gw.cfg["limits"]["max_buffered_bytes"] = 4096
	gw.write_config()
	gw.start()
	body = {"contact": {"first_name": "y" * 6000}}
	r = gw.request("POST", "/crm/v1/contacts", json=body)
	assert r.status == 503 and r.error_code == "overloaded", r
	assert proc.records() == []
