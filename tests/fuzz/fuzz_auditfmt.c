/* fuzz_auditfmt.c -- libFuzzer target: audit frames, segment headers, checkpoints, verify */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auditfmt.h"
#include "buf.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fixed first key: nothing verifies, but every path up to the signature
 * check is reached, and scan/verify must never read out of bounds. */
static const unsigned char pub[32] = { 1, 2, 3 };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct auditfmt_segdata		 segs[2];
	struct auditfmt_scan		 sc;
	struct auditfmt_header		 h;
	struct auditfmt_checkpoint	 ck;
	struct buf			 b = { 0 };
	const unsigned char		*body;
	size_t				 blen, flen, off = 0, cut;
	uint64_t			 seq, t;
	char				 msg[256], *s;

	/* Frames one after another, each body through every decoder. */
	while (off < size && auditfmt_frame_decode(data + off, size - off,
	    &body, &blen, &flen) == 1) {
		(void)auditfmt_header_decode(body, blen, &h, msg, sizeof(msg));
		if (auditfmt_checkpoint_decode(body, blen, &ck, msg,
		    sizeof(msg)) == 0) {
			(void)auditfmt_checkpoint_verify(&ck, pub);
			if (auditfmt_checkpoint_line(&b, &ck) == 0)
				(void)auditfmt_checkpoint_parse_line(b.data,
				    &ck, msg, sizeof(msg));
			buf_truncate(&b, 0);
		}
		(void)auditfmt_record_peek(body, blen, &seq, &t);
		off += flen;
	}
	auditfmt_segment_scan(data, size, &sc);
	(void)auditfmt_segment_recovery(data, size, &ck);

	/* The input as a log of one or two segments, and as a keychain. */
	cut = size > 0 ? data[0] * size / 256 : 0;
	segs[0].id = 1;
	segs[0].data = data;
	segs[0].len = cut;
	segs[1].id = 2;
	segs[1].data = data + cut;
	segs[1].len = size - cut;
	(void)auditfmt_verify_log(pub, segs, 2, NULL, 0, NULL, msg,
	    sizeof(msg), NULL);
	segs[1].id = 5;
	(void)auditfmt_verify_log(pub, segs + 1, 1, data, cut, NULL, msg,
	    sizeof(msg), NULL);

	/* Text inputs: anchor lines, times, subject values. */
	if ((s = malloc(size + 1)) != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
		(void)auditfmt_checkpoint_parse_line(s, &ck, msg, sizeof(msg));
		(void)auditfmt_time_parse(s, &t);
		(void)audit_subject_normalise(s, size, "1", &b);
		free(s);
	}
	buf_free(&b);
	return 0;
}
