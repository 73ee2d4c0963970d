/* metrics.h -- per-thread counters and histograms, rendered as Prometheus text */
#ifndef SUBGATE_METRICS_H
#define SUBGATE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/*
 * One metrics table per thread: only its owner writes it (lock-free on the
 * hot path); the admin thread reads every table while rendering. Names
 * start with subgate_; labels are pre-rendered Prometheus label text
 * without braces ("integration=\"crm\",code=\"200\"") or "". Label values
 * are names from the config or fixed words, never request data.
 */
struct metrics;

struct metrics *metrics_new(void);
void	metrics_free(struct metrics *m);
/* Add n to a counter (created at 0 on first use). */
void	metrics_add(struct metrics *m, const char *name, const char *labels,
	    uint64_t n);
/* Record one observation in seconds in a latency histogram. */
void	metrics_observe(struct metrics *m, const char *name, const char *labels,
	    double seconds);
/* Set a gauge (last writer wins; summed across tables when rendered). */
void	metrics_set(struct metrics *m, const char *name, const char *labels,
	    double v);
/* Render the sum over tables[0..n) in the Prometheus text format. */
int	metrics_render(struct metrics *const *tables, size_t n, struct buf *out);

#endif
