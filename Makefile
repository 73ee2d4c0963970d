# subgate -- plain GNU Makefile. `make` builds build/subgate and build/subgatectl.
# `make test` / `make demo` / `make bench` install missing Debian packages first.

CC	?= cc
PKGS	:= openssl libevent libevent_openssl libevent_pthreads libconfig jemalloc
BUILD	:= build
SANITIZE ?=

WARN	:= -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	   -Wpointer-arith -Wcast-qual -Werror
CFLAGS	?= -O2 -g
CFLAGS	+= -std=c11 -D_GNU_SOURCE -fstack-protector-strong -D_FORTIFY_SOURCE=2 \
	   -fPIE $(WARN) -MMD -MP $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS	+= -pie -Wl,-z,relro,-z,now
LDLIBS	:= $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lunistring -lpthread -lm
ifneq ($(SANITIZE),)
CFLAGS	+= -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS	+= -fsanitize=$(SANITIZE)
# ASan brings its own allocator: do not link jemalloc under it.
LDLIBS	:= $(filter-out -ljemalloc,$(LDLIBS))
endif

LIB_SRC	:= $(filter-out proxy/main.c,$(wildcard proxy/*.c))
LIB_OBJ	:= $(LIB_SRC:%.c=$(BUILD)/%.o)
CTL_SRC	:= $(wildcard proxy/ctl/*.c)
CTL_OBJ	:= $(CTL_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
LIB	:= $(BUILD)/libsubgate.a

.PHONY: all deps test unit integration demo bench install fuzz format lint clean
all: $(BUILD)/subgate $(BUILD)/subgatectl

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iproxy -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/subgate: $(BUILD)/proxy/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/subgatectl: $(CTL_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Iproxy -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) \
	    $(shell pkg-config --cflags --libs cmocka jansson)

deps:
	@scripts/install-deps.sh

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; (cd tests/unit && ../../$$t); done

integration: all
	cd tests/integration && /usr/bin/python3 -m pytest -q -p no:cacheprovider .

test: deps
	$(MAKE) all $(UNIT_BIN)
	$(MAKE) unit
	$(MAKE) integration

demo: deps
	$(MAKE) all
	scripts/demo.sh

bench:
	scripts/bench.sh

# `make install [DESTDIR=...] [PREFIX=/usr/local]`: the two binaries, the
# systemd unit (README "Running it as a service") and the documentation.
PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
UNITDIR	?= $(PREFIX)/lib/systemd/system
DOCDIR	?= $(PREFIX)/share/doc/subgate
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BUILD)/subgate $(BUILD)/subgatectl $(DESTDIR)$(BINDIR)/
	sed 's|@BINDIR@|$(BINDIR)|g' conf/subgate.service >$(DESTDIR)$(UNITDIR)/subgate.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/subgate.service
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 0644 conf/subgate.conf $(DESTDIR)$(DOCDIR)/subgate.conf.example

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_LIBSRC := proxy/buf.c proxy/log.c proxy/http.c proxy/json.c proxy/route.c proxy/policy.c proxy/auditfmt.c
FUZZ_SECONDS ?= 30
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIBSRC)
	@mkdir -p $(dir $@)
	clang -g -O1 -D_GNU_SOURCE -Iproxy -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -o $@ $< $(FUZZ_LIBSRC) \
	    $(shell pkg-config --cflags --libs openssl) -lunistring

fuzz: deps $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	    mkdir -p tests/fuzz/corpus-run/$$n; echo "== $$n ($(FUZZ_SECONDS)s)"; \
	    $$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	        tests/fuzz/corpus-run/$$n tests/fuzz/corpus/$$n; done

format:
	clang-format -i proxy/*.c proxy/*.h proxy/ctl/*.c tests/unit/*.c tests/fuzz/*.c

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,portability \
	    --suppress=missingIncludeSystem -Iproxy proxy
	clang-tidy --quiet proxy/*.c -- -std=c11 -D_GNU_SOURCE -Iproxy \
	    $(shell pkg-config --cflags $(PKGS))

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(CTL_OBJ:.o=.d) $(BUILD)/proxy/main.d
