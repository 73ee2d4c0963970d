/* metrics.c -- per-thread counters and histograms, rendered as Prometheus text */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define METRICS_SLOTS	1024		/* per table; power of two */
#define METRICS_KEY	192
#define METRICS_NBUCKETS 14

static const double metrics_bounds[METRICS_NBUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10,
};

enum metrics_kind { M_COUNTER = 1, M_HISTOGRAM, M_GAUGE };

struct metrics_slot {
	int		 used;		/* published with release semantics */
	int		 kind;
	char		 name[64];
	char		 labels[METRICS_KEY - 64];
	uint64_t	 count;		/* counter value / histogram count */
	uint64_t	 sum_ns;	/* histogram sum */
	double		 gauge;
	uint64_t	 buckets[METRICS_NBUCKETS];
};

struct metrics {
	pthread_mutex_t		 insert;	/* serialises inserts vs. render */
	struct metrics_slot	 slot[METRICS_SLOTS];
};

struct metrics *
metrics_new(void)
{
	struct metrics	*m;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	pthread_mutex_init(&m->insert, NULL);
	return m;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	pthread_mutex_destroy(&m->insert);
	free(m);
}

static uint32_t
metrics_hash(const char *a, const char *b)
{
	uint32_t	h = 2166136261u;

	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	h = (h ^ '|') * 16777619u;
	for (; *b; b++)
		h = (h ^ (unsigned char)*b) * 16777619u;
	return h;
}

/* The slot for (name, labels), created if needed; NULL when the table is full
 * or a name does not fit (the observation is lost, never misattributed). */
static struct metrics_slot *
metrics_slot(struct metrics *m, const char *name, const char *labels, int kind)
{
	struct metrics_slot	*s;
	uint32_t		 i, h;

	if (strlen(name) >= sizeof(s->name) || strlen(labels) >= sizeof(s->labels))
		return NULL;
	h = metrics_hash(name, labels);
	for (i = 0; i < METRICS_SLOTS; i++) {
		s = &m->slot[(h + i) & (METRICS_SLOTS - 1)];
		if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE)) {
			pthread_mutex_lock(&m->insert);
			strcpy(s->name, name);
			strcpy(s->labels, labels);
			s->kind = kind;
			__atomic_store_n(&s->used, 1, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&m->insert);
			return s;
		}
		if (strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0)
			return s->kind == kind ? s : NULL;
	}
	return NULL;
}

void
metrics_add(struct metrics *m, const char *name, const char *labels, uint64_t n)
{
	struct metrics_slot	*s;

	if (m == NULL || (s = metrics_slot(m, name, labels, M_COUNTER)) == NULL)
		return;
	__atomic_fetch_add(&s->count, n, __ATOMIC_RELAXED);
}

void
metrics_observe(struct metrics *m, const char *name, const char *labels,
    double seconds)
{
	struct metrics_slot	*s;
	int			 i;

	if (m == NULL || (s = metrics_slot(m, name, labels, M_HISTOGRAM)) == NULL)
		return;
	for (i = 0; i < METRICS_NBUCKETS; i++)
		if (seconds <= metrics_bounds[i]) {
			__atomic_fetch_add(&s->buckets[i], 1, __ATOMIC_RELAXED);
			break;
		}
	__atomic_fetch_add(&s->sum_ns, (uint64_t)(seconds * 1e9),
	    __ATOMIC_RELAXED);
	__atomic_fetch_add(&s->count, 1, __ATOMIC_RELAXED);
}

void
metrics_set(struct metrics *m, const char *name, const char *labels, double v)
{
	struct metrics_slot	*s;

	if (m == NULL || (s = metrics_slot(m, name, labels, M_GAUGE)) == NULL)
		return;
	__atomic_store(&s->gauge, &v, __ATOMIC_RELAXED);
}

/* A merged series while rendering. */
struct metrics_series {
	const struct metrics_slot	*first;
	uint64_t			 count, sum_ns;
	double				 gauge;
	uint64_t			 buckets[METRICS_NBUCKETS];
};

static int
metrics_series_cmp(const void *a, const void *b)
{
	const struct metrics_series	*x = a, *y = b;
	int				 c;

	if ((c = strcmp(x->first->name, y->first->name)) != 0)
		return c;
	return strcmp(x->first->labels, y->first->labels);
}

static void
metrics_labels(struct buf *out, const char *labels, const char *extra)
{
	if (*labels == '\0' && extra == NULL)
		return;
	buf_append_char(out, '{');
	buf_append_str(out, labels);
	if (extra != NULL) {
		if (*labels != '\0')
			buf_append_char(out, ',');
		buf_append_str(out, extra);
	}
	buf_append_char(out, '}');
}

int
metrics_render(struct metrics *const *tables, size_t n, struct buf *out)
{
	struct metrics_series	*ser = NULL, *se;
	size_t			 nser = 0, cap = 0, t, i, j;
	const char		*last = "";
	static const char	*kinds[] = { "", "counter", "histogram", "gauge" };
	char			 le[48];
	uint64_t		 cum;

	for (t = 0; t < n; t++) {
		pthread_mutex_lock(&tables[t]->insert);
		for (i = 0; i < METRICS_SLOTS; i++) {
			const struct metrics_slot *s = &tables[t]->slot[i];
			if (!__atomic_load_n(&s->used, __ATOMIC_ACQUIRE))
				continue;
			for (j = 0; j < nser; j++)
				if (strcmp(ser[j].first->name, s->name) == 0 &&
				    strcmp(ser[j].first->labels, s->labels) == 0)
					break;
			if (j == nser) {
				if (nser == cap) {
					cap = cap ? cap * 2 : 64;
					se = realloc(ser, cap * sizeof(*ser));
					if (se == NULL) {
						pthread_mutex_unlock(&tables[t]->insert);
						free(ser);
						return -1;
					}
					ser = se;
				}
				memset(&ser[nser], 0, sizeof(ser[nser]));
				ser[nser++].first = s;
			}
			se = &ser[j];
			se->count += __atomic_load_n(&s->count, __ATOMIC_RELAXED);
			se->sum_ns += __atomic_load_n(&s->sum_ns, __ATOMIC_RELAXED);
			se->gauge += s->gauge;
			for (j = 0; j < METRICS_NBUCKETS; j++)
				se->buckets[j] += __atomic_load_n(&s->buckets[j],
				    __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&tables[t]->insert);
	}
	if (nser > 0)
		qsort(ser, nser, sizeof(*ser), metrics_series_cmp);
	for (i = 0; i < nser; i++) {
		const struct metrics_slot *s = ser[i].first;
		if (strcmp(last, s->name) != 0) {
			buf_printf(out, "# TYPE %s %s\n", s->name, kinds[s->kind]);
			last = s->name;
		}
		switch (s->kind) {
		case M_COUNTER:
			buf_append_str(out, s->name);
			metrics_labels(out, s->labels, NULL);
			buf_printf(out, " %llu\n", (unsigned long long)ser[i].count);
			break;
		case M_GAUGE:
			buf_append_str(out, s->name);
			metrics_labels(out, s->labels, NULL);
			buf_printf(out, " %.17g\n", ser[i].gauge);
			break;
		case M_HISTOGRAM:
			cum = 0;
			for (j = 0; j < METRICS_NBUCKETS; j++) {
				cum += ser[i].buckets[j];
				snprintf(le, sizeof(le), "le=\"%g\"", metrics_bounds[j]);
				buf_printf(out, "%s_bucket", s->name);
				metrics_labels(out, s->labels, le);
				buf_printf(out, " %llu\n", (unsigned long long)cum);
			}
			buf_printf(out, "%s_bucket", s->name);
			metrics_labels(out, s->labels, "le=\"+Inf\"");
			buf_printf(out, " %llu\n", (unsigned long long)ser[i].count);
			buf_printf(out, "%s_sum", s->name);
			metrics_labels(out, s->labels, NULL);
			buf_printf(out, " %.9f\n", (double)ser[i].sum_ns / 1e9);
			buf_printf(out, "%s_count", s->name);
			metrics_labels(out, s->labels, NULL);
			buf_printf(out, " %llu\n", (unsigned long long)ser[i].count);
			break;
		}
	}
	free(ser);
	return 0;
}
