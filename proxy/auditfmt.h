/* auditfmt.h -- disclosure log on-disk format: frames, sealing, chain, checkpoints (pure) */
#ifndef SUBGATE_AUDITFMT_H
#define SUBGATE_AUDITFMT_H

/*
 * On-disk format, version 1. All integers are unsigned big-endian.
 *
 * Directory: seg-NNNNNNNNNNNNNNNNNNNN.sga (segment id in 20 decimal digits,
 * ids count up from 1 without gaps), LOCK (flock), signer.key (the current
 * Ed25519 signing key, PEM PKCS#8, 0600), signer.next (a key being handed
 * over), keychain (the checkpoint frames of segments deleted by retention,
 * verbatim, so the key hand-overs stay verifiable from the first key).
 *
 * Frame: u32 len | u32 crc32c(len bytes) | u32 crc32c(body) | body[len]
 *   len <= AUDITFMT_MAX_BODY. Body byte 0 is the type.
 *
 * Batches and the end of the data. The writer appends frames in batches:
 *   at most AUDITFMT_MAX_BATCH bytes are ever written and not yet covered
 *   by a completed sync (a larger queue is written as several batches,
 *   each synced before the next; a write made while a sync runs counts
 *   as unsynced until a later sync returns), so at most one batch, the
 *   last, is ever unsynced. The live segment is
 *   preallocated: zero bytes from a frame boundary to the end of the file
 *   are unused space, the end of the data as the end of the file is
 *   (closed segments are cut to their last frame before the close batch
 *   is written, so they never end in zeros). A crash during the last
 *   batch can keep any of its pages and lose any other (lost pages read
 *   as zeros, the preallocated contents): a page late in the batch may
 *   survive where an earlier one did not. Hence, for a segment whose data
 *   does not end with an intact close checkpoint:
 *   - a frame cut short by the end of the file is a torn tail;
 *   - damage (a frame whose length or checksums do not hold, a hole of
 *     zeros or garbage) such that every non-zero byte from the damaged
 *     frame on lies within AUDITFMT_MAX_BATCH bytes of that frame's start
 *     is a torn tail: the lost last batch. The valid data ends at the end
 *     of the last intact frame before the damage; everything after it is
 *     the lost batch, not part of the log (frames there that happen to
 *     look intact included);
 *   - damage with non-zero bytes further than AUDITFMT_MAX_BATCH after it
 *     is corruption (it cannot be the last batch), and so is a damaged
 *     header frame with non-zero bytes after it (the header is synced in
 *     the segment's first batch, before any other).
 *   In a segment that ends with an intact close checkpoint, or that a
 *   later segment follows, any damaged frame is corruption. (Damage to
 *   the close checkpoint itself reads as a torn tail: a lost close batch,
 *   no more than cutting the file there would be; verify --anchor bounds
 *   what may be lost.) A torn tail is ended by the writer when it starts:
 *   a recovery checkpoint in the next segment states the valid length;
 *   verify reads no further than that.
 *
 * Header frame (type 1), always frame 0 of a segment, plaintext:
 *   type | "SGAUDIT1" | u16 version | u64 segment_id | u64 first_seq |
 *   u64 created_ms | u64 prev_segment_id | prev_head[32] | signer_pub[32] |
 *   u8 instance_len | instance | u8 nreaders |
 *   nreaders x { reader_id[32] = SHA-256(reader X25519 public key),
 *                eph_pub[32]   = ephemeral X25519 public key,
 *                wrapped[48]   = AES-256-GCM(KEK, nonce 0, aad =
 *                                segment_id | reader_id) of the data key }
 *   KEK = HKDF-SHA-256(ikm = X25519(eph, reader), salt = none,
 *         info = "subgate/v1 audit-kek" | segment_id | eph_pub | reader_pub).
 *
 * Record frame (type 2): type | u64 seq | u64 time_ms | AES-256-GCM
 *   ciphertext | tag[16], under the segment data key, nonce = 4 zero bytes |
 *   u64 frame index in the segment (the header is frame 0), aad =
 *   u64 segment_id | the 17 plaintext bytes before it. Plaintext: the
 *   record's JSON object, {"seq":..,"time":..,"instance":..,<members>}.
 *
 * Checkpoint frame (type 3), plaintext:
 *   type | u8 kind | u64 segment_id | u64 last_seq | u64 count (records in
 *   this segment so far) | u64 time_ms | head[32] (chain head before this
 *   frame) | next_pub[32] (the key that signs the next checkpoint) |
 *   u64 aux1 | u64 aux2 | aux_head[32] | u8 instance_len | instance |
 *   sig[64] = Ed25519(current key, "subgate/v1 audit-checkpoint" | all of
 *   the above). Kinds: periodic; close (last frame of a segment); recovery
 *   (frame 1 of the segment after an unclosed one: aux1 = that segment,
 *   aux2 = its valid length, aux_head = the chain head there); retention
 *   (segments up to aux1 deleted, aux2 = first kept, aux_head = the first
 *   kept segment's prev_head).
 *
 * Chain: head = SHA-256(head | frame bytes) for every frame in order, the
 * headers included; a segment header's prev_head is the head where the
 * previous segment's valid frames end (zero for segment 1).
 *
 * Checkpoint line (operational log, and verify --anchor):
 *   audit checkpoint v1 kind=K instance=I segment=N seq=N count=N
 *   time=RFC3339 head=HEX next=HEX sig=HEX
 */

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "buf.h"

/* Big-endian integers, as every field of the format is stored. */
static inline void
auditfmt_put_u32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static inline void
auditfmt_put_u64(unsigned char *p, uint64_t v)
{
	auditfmt_put_u32(p, (uint32_t)(v >> 32));
	auditfmt_put_u32(p + 4, (uint32_t)v);
}

static inline uint32_t
auditfmt_get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t
auditfmt_get_u64(const unsigned char *p)
{
	return (uint64_t)auditfmt_get_u32(p) << 32 | auditfmt_get_u32(p + 4);
}

#define AUDITFMT_FRAME_HDR	12
#define AUDITFMT_MAX_BODY	(4u << 20)
/* The most bytes written to a segment between two syncs (one batch); a
 * record of AUDIT_MAX_RECORD bytes fits in one with its frame. */
#define AUDITFMT_MAX_BATCH	(2u << 20)
#define AUDITFMT_MAX_READERS	16
#define AUDITFMT_INSTANCE_MAX	255
#define AUDITFMT_TAG		16

enum auditfmt_type {
	AUDITFMT_HEADER = 1,
	AUDITFMT_RECORD = 2,
	AUDITFMT_CHECKPOINT = 3,
};

enum auditfmt_kind {
	AUDITFMT_CK_PERIODIC = 1,
	AUDITFMT_CK_CLOSE = 2,
	AUDITFMT_CK_RECOVERY = 3,
	AUDITFMT_CK_RETENTION = 4,
};

struct auditfmt_reader {
	unsigned char	 id[32];
	unsigned char	 eph[32];
	unsigned char	 wrapped[48];
};

struct auditfmt_header {
	uint64_t		 segment_id, first_seq, created_ms;
	uint64_t		 prev_segment_id;
	unsigned char		 prev_head[32];
	unsigned char		 signer_pub[32];
	char			 instance[AUDITFMT_INSTANCE_MAX + 1];
	size_t			 nreaders;
	struct auditfmt_reader	 readers[AUDITFMT_MAX_READERS];
};

struct auditfmt_checkpoint {
	int		 kind;
	uint64_t	 segment_id, last_seq, count, time_ms;
	unsigned char	 head[32];
	unsigned char	 next_pub[32];
	uint64_t	 aux1, aux2;
	unsigned char	 aux_head[32];
	char		 instance[AUDITFMT_INSTANCE_MAX + 1];
	unsigned char	 sig[64];
};

/* A segment file's contents, borrowed. */
struct auditfmt_segdata {
	uint64_t		 id;
	const unsigned char	*data;
	size_t			 len;
};

/* What a scan of one segment found (see auditfmt_segment_scan). */
enum auditfmt_tail {
	AUDITFMT_TAIL_CLEAN = 0,	/* ends on a frame boundary (+ zeros) */
	AUDITFMT_TAIL_TORN,		/* ends in a partial or torn frame */
	AUDITFMT_TAIL_CORRUPT,		/* a complete frame is damaged */
};

struct auditfmt_scan {
	int			 has_header;
	struct auditfmt_header	 header;
	size_t			 valid_len;	/* bytes of whole, valid frames */
	enum auditfmt_tail	 tail;
	unsigned char		 head[32];	/* chain head at valid_len */
	uint64_t		 last_seq;	/* header.first_seq - 1 if no record */
	uint64_t		 records;
	uint64_t		 frames;
	unsigned char		 signer_pub[32];	/* key that signs next */
	int			 closed;	/* last frame is a close checkpoint */
	uint64_t		 last_time_ms;
};

/* CRC-32C (Castagnoli) of p[0..n), continuing from crc (start with 0). */
uint32_t auditfmt_crc32c(uint32_t crc, const void *p, size_t n);

/* Append one frame holding body[0..len) to out. 0, or -1 (too long, ENOMEM). */
int	auditfmt_frame_encode(struct buf *out, const void *body, size_t len);

/*
 * Decode the frame at in[0..len). Returns 1 with *body, *body_len and
 * *frame_len (header + body) set; 0 when the input ends inside the frame,
 * everything left is zero bytes, or the frame is damaged but only zero
 * bytes follow it (a torn tail, preallocated space, or more bytes needed);
 * -1 when a complete frame is damaged and more data follows it (checksum,
 * length over the limit).
 */
int	auditfmt_frame_decode(const unsigned char *in, size_t len,
	    const unsigned char **body, size_t *body_len, size_t *frame_len);

/* head = SHA-256(head | frame[0..len)). */
void	auditfmt_chain_extend(unsigned char head[32], const unsigned char *frame,
	    size_t len);

/* Header body encode/decode. 0, or -1 with err. */
int	auditfmt_header_encode(struct buf *out, const struct auditfmt_header *h);
int	auditfmt_header_decode(const unsigned char *body, size_t len,
	    struct auditfmt_header *h, char *err, size_t errlen);

/*
 * Wrap the segment data key dkey for each reader public key (X25519,
 * borrowed) into h->readers; h->segment_id must be set. 0 or -1 with err.
 */
int	auditfmt_header_seal_key(struct auditfmt_header *h,
	    const unsigned char dkey[32], EVP_PKEY *const *readers, size_t n,
	    char *err, size_t errlen);
/* Unwrap the data key with a reader private key. 0, or -1 with err (no
 * entry for this reader, or the wrapped key does not authenticate). */
int	auditfmt_header_open_key(const struct auditfmt_header *h,
	    EVP_PKEY *reader, unsigned char dkey[32], char *err, size_t errlen);

/* Seal json[0..len) into a record frame body appended to out. 0 or -1. */
int	auditfmt_record_seal(struct buf *out, const unsigned char dkey[32],
	    uint64_t segment_id, uint64_t frame_index, uint64_t seq,
	    uint64_t time_ms, const char *json, size_t len);
/* Plaintext fields of a record body. 0, or -1 when too short. */
int	auditfmt_record_peek(const unsigned char *body, size_t len,
	    uint64_t *seq, uint64_t *time_ms);
/* Open a record body into out (replacing its contents). 0, or -1 when it
 * does not authenticate. */
int	auditfmt_record_open(struct buf *out, const unsigned char dkey[32],
	    uint64_t segment_id, uint64_t frame_index, const unsigned char *body,
	    size_t len);

/*
 * A segment data key expanded once into a reusable AES-256-GCM context:
 * sealing or opening a record with it costs the cipher work only (no
 * algorithm lookup, allocation or key schedule per record). One thread at
 * a time. auditfmt_segkey_new copies nothing of dkey but the expanded key
 * (the caller wipes its copy); NULL on failure. auditfmt_segkey_free wipes
 * and frees; accepts NULL.
 */
struct auditfmt_segkey;
struct auditfmt_segkey *auditfmt_segkey_new(const unsigned char dkey[32]);
void	auditfmt_segkey_free(struct auditfmt_segkey *k);
/*
 * Append a whole record frame (frame header and the body
 * auditfmt_record_seal makes) sealing the plaintext head[0..headlen) |
 * rest[0..restlen) (the two pieces are one JSON text, passed apart so
 * neither needs copying). 0, or -1 (too long, ENOMEM, cipher failure)
 * with out unchanged.
 */
int	auditfmt_segkey_seal_frame(struct auditfmt_segkey *k, struct buf *out,
	    uint64_t segment_id, uint64_t frame_index, uint64_t seq,
	    uint64_t time_ms, const char *head, size_t headlen,
	    const char *rest, size_t restlen);
/* auditfmt_record_open under k. */
int	auditfmt_segkey_open(struct auditfmt_segkey *k, struct buf *out,
	    uint64_t segment_id, uint64_t frame_index,
	    const unsigned char *body, size_t len);

/* Sign c with signer (Ed25519, borrowed), filling c->sig, and append the
 * checkpoint body to out. 0 or -1. */
int	auditfmt_checkpoint_sign(struct buf *out, struct auditfmt_checkpoint *c,
	    EVP_PKEY *signer);
/* Decode a checkpoint body. 0, or -1 with err. */
int	auditfmt_checkpoint_decode(const unsigned char *body, size_t len,
	    struct auditfmt_checkpoint *c, char *err, size_t errlen);
/* 1 if c->sig is a valid signature by the raw Ed25519 key pub, else 0. */
int	auditfmt_checkpoint_verify(const struct auditfmt_checkpoint *c,
	    const unsigned char pub[32]);
/* Append the checkpoint line (without the "audit checkpoint " prefix and
 * newline) to out. 0 or -1. */
int	auditfmt_checkpoint_line(struct buf *out,
	    const struct auditfmt_checkpoint *c);
/* Parse a line as printed (the prefix and any text before it are skipped).
 * Fills kind, instance, segment_id, last_seq, count, time_ms, head,
 * next_pub, sig. 0, or -1 with err. */
int	auditfmt_checkpoint_parse_line(const char *line,
	    struct auditfmt_checkpoint *c, char *err, size_t errlen);
const char *auditfmt_kind_name(int kind);

/* Raw 32-byte public key of an Ed25519 or X25519 key. 0 or -1. */
int	auditfmt_pub_raw(EVP_PKEY *k, unsigned char out[32]);

/*
 * Scan a segment's frames from the start: decode the header, extend the
 * chain from header.prev_head, and stop at the end (of the file, or where
 * only zeros follow a frame), a torn tail (a partial frame, or damage in
 * the last batch's window: see "Batches" above) or a damaged frame
 * (s->tail says which; valid_len is where the valid frames end). Checks nothing cryptographic: the writer uses it to resume,
 * verify does its own checking.
 */
void	auditfmt_segment_scan(const unsigned char *data, size_t len,
	    struct auditfmt_scan *s);
/*
 * The frame at data[off] (a frame boundary; data[0..len) is the whole
 * segment) does not decode: 1 if that is a torn tail by the batch rule
 * above (every non-zero byte from off on lies within AUDITFMT_MAX_BATCH
 * bytes of off, off is not 0 (the header), and no intact close
 * checkpoint ends the data), else 0 (corruption). The caller checks that no close checkpoint precedes off.
 */
int	auditfmt_tail_torn(const unsigned char *data, size_t len, size_t off);

/* If the segment is a recovery segment (frame 1 is a recovery checkpoint),
 * return 1 with the checkpoint; else 0. */
int	auditfmt_segment_recovery(const unsigned char *data, size_t len,
	    struct auditfmt_checkpoint *c);

/* Verification results. */
enum auditfmt_verdict {
	AUDITFMT_INTACT = 0,
	AUDITFMT_TAMPERED = 1,
	AUDITFMT_TORN = 2,
};

struct auditfmt_verify_stats {
	uint64_t	segments, records, checkpoints, first_seq, last_seq;
};

/*
 * Verify a whole log: segs sorted by id (every segment file present),
 * keychain (may be NULL/0) the retained checkpoints of deleted segments,
 * pub the first signing key (audit-signer.pub, raw), anchor NULL or a
 * checkpoint line. Checks every frame's checksum, the chain, the sequence
 * numbers, every checkpoint signature and key hand-over, segment
 * continuity, recovery and retention statements. Returns the verdict with
 * a message saying what and where in msg; stats may be NULL.
 */
enum auditfmt_verdict auditfmt_verify_log(const unsigned char pub[32],
	    const struct auditfmt_segdata *segs, size_t nsegs,
	    const unsigned char *keychain, size_t keychain_len,
	    const char *anchor, char *msg, size_t msglen,
	    struct auditfmt_verify_stats *stats);

/* "seg-%020llu.sga" into out (at least 32 bytes). */
void	auditfmt_segment_name(char *out, size_t outlen, uint64_t id);
/* 1 and *id if name is a segment file name, else 0. */
int	auditfmt_segment_parse_name(const char *name, uint64_t *id);

/* RFC 3339 UTC with milliseconds: "2024-05-01T12:34:56.789Z" (25 bytes). */
void	auditfmt_time_format(uint64_t ms, char out[32]);
/* Parse RFC 3339 (Z or +hh:mm offset, optional fraction) or YYYY-MM-DD.
 * 0, or -1. */
int	auditfmt_time_parse(const char *s, uint64_t *ms);

/*
 * The keyed subject hash the worker stores and the CLI searches for:
 * HMAC-SHA-256(index_key, normalised value) in lower-case hex. value (not
 * NUL-terminated) is trimmed of ASCII white space. With '@' it is an
 * email: Unicode NFC, lower case (full mappings, no language's rules), NFC
 * again (libunistring). Otherwise, with 6 or more digits,
 * a phone number: its digits, "00" prefix removed, phone_country_code's
 * digits in front unless it starts with '+' or "00". Returns 1 with out
 * filled, 0 if value is not a subject value (or an email is not UTF-8).
 */
int	audit_subject_hash(const unsigned char index_key[32], const char *value,
	    size_t len, const char *phone_country_code, char out[65]);

/* The normalised form audit_subject_hash hashes (for tests); same returns.
 * out is replaced. */
int	audit_subject_normalise(const char *value, size_t len,
	    const char *phone_country_code, struct buf *out);

#endif
