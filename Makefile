# noiseshim build.  `make` builds into $(BUILD); `make test` runs every suite;
# `make sanitize` runs the unit and integration suites under ASan+UBSan;
# `make install` copies the command, the shims, the man page and the config
# examples under $(DESTDIR)$(PREFIX).  The version is NS_VERSION in lib/version.h.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SANFLAGS ?=
CFLAGS   += $(OPT) $(SANFLAGS) -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter \
            -D_GNU_SOURCE -fPIC -fvisibility=hidden -MMD -MP -Ilib
LDFLAGS  += $(SANFLAGS)
CRYPTO_LIBS := -lsodium -lcrypto

PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   := $(PREFIX)/bin
SHIMDIR  := $(PREFIX)/lib/noiseshim
MANDIR   := $(PREFIX)/share/man/man1
DOCDIR   := $(PREFIX)/share/doc/noiseshim
# The one version: NS_VERSION in lib/version.h, copied into the man page here.
VERSION  := $(shell sed -n 's/^\#define NS_VERSION "\(.*\)"$$/\1/p' lib/version.h)
MAN_PAGE := $(BUILD)/noiseshim.1
CONFIG_DOCS := config/README.md config/noiseshim.conf.example config/cache.example

# Installs what a fresh Debian 12 machine lacks for the suites (the one list).
TEST_DEPS := examples/install-deps.sh --test

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CORE     := $(BUILD)/libnoisecore.a

SHIM_COMMON := $(filter-out shim/client.c shim/server.c,$(wildcard shim/*.c))
CLIENT_OBJ  := $(SHIM_COMMON:%.c=$(BUILD)/%.o) $(BUILD)/shim/client.o
CLIENT_SO   := $(BUILD)/libnoiseshim.so
SERVER_OBJ  := $(SHIM_COMMON:%.c=$(BUILD)/%.o) $(BUILD)/shim/server.o
SERVER_SO   := $(BUILD)/libnoiseshim-server.so
# -lhiredis: the fleet-wide replay store (NOISESHIM_REPLAY_STORE, lib/replay_guard.c)
# speaks Redis; the client shim links it too, as both share the connection
# code that calls the replay check.
SHIM_LIBS   := $(CRYPTO_LIBS) -ldl -lpthread -lhiredis

CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI      := $(BUILD)/noiseshim
# doctor, run and the server proxy read the configuration exactly as the shims do.
CLI_SHIM_OBJ := $(BUILD)/shim/config.o
# The server proxy keeps the accept shim's replay windows, the Redis store included.
CLI_LIBS := $(CRYPTO_LIBS) -lpthread -lhiredis
$(CLI_OBJ): CFLAGS += -Ishim

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# nfq_delay is the WAN emulator's delay line, not a benchmark of the core.
BENCH_SRC := $(filter-out bench/nfq_delay.c,$(wildcard bench/*.c))
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
NFQ_DELAY := $(BUILD)/bench/nfq_delay

INTEROP_C   := $(BUILD)/tests/interop_peer
GOPEER      := $(BUILD)/tests/gopeer
GOPATH_DIR  := $(abspath $(BUILD))/gopath
CLIENT_MODES := $(BUILD)/tests/client_modes
FC_CLIENT    := $(BUILD)/tests/fc_client
FC_SERVER    := $(BUILD)/tests/fc_server
STATS_WRITER := $(BUILD)/tests/stats_writer
CACHE_PROBE  := $(BUILD)/tests/cache_probe
FLOOD_PEER   := $(BUILD)/tests/flood_peer
HOSTILE_PEER := $(BUILD)/tests/hostile_peer
HOSTILE_IDLE := $(BUILD)/tests/hostile_idle
FF_CLIENT    := $(BUILD)/tests/ff_client
RECV_PROBE   := $(BUILD)/tests/recv_probe

.PHONY: all demo test test-deps test-suites test-unit test-cli test-install test-interop test-netns \
        test-client test-cache test-server test-tfo test-failclosed test-handoff test-replay test-flood test-ops test-proxy test-hostile test-firstflight test-firstflight-local test-records sanitize install uninstall \
        bench bench-rtt bench-throughput bench-handshake bench-overhead bench-cache bench-proxy bench-memory test-bench-smoke clean
all: $(CORE) $(CLI) $(CLIENT_SO) $(SERVER_SO) $(MAN_PAGE)

$(MAN_PAGE): doc/noiseshim.1.in lib/version.h
	@mkdir -p $(dir $@)
	sed 's/@VERSION@/$(VERSION)/g' $< >$@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(CORE): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# Only the wrapped libc entry points are exported (NS_EXPORT); the core stays hidden.
$(CLIENT_SO): $(CLIENT_OBJ) $(CORE)
	$(CC) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $(CLIENT_OBJ) $(CORE) $(SHIM_LIBS)

$(SERVER_SO): $(SERVER_OBJ) $(CORE)
	$(CC) $(LDFLAGS) -shared -Wl,-z,defs -o $@ $(SERVER_OBJ) $(CORE) $(SHIM_LIBS)

$(CLI): $(CLI_OBJ) $(CLI_SHIM_OBJ) $(CORE)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(CLI_SHIM_OBJ) $(CORE) $(CLI_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(CORE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(CORE) -lcmocka $(CRYPTO_LIBS)

$(INTEROP_C): $(BUILD)/tests/interop/interop_peer.o $(CORE)
	$(CC) $(LDFLAGS) -o $@ $< $(CORE) $(CRYPTO_LIBS) -lpthread

# The independent peer: Go's flynn/noise from Debian, GOPATH mode, no network.
$(GOPEER): $(wildcard tests/interop/gopeer/*.go)
	@mkdir -p $(GOPATH_DIR)/src $(dir $@)
	rm -rf $(GOPATH_DIR)/src/gopeer && cp -r tests/interop/gopeer $(GOPATH_DIR)/src/gopeer
	cd $(GOPATH_DIR)/src/gopeer && GO111MODULE=off GOPROXY=off \
	    GOPATH=/usr/share/gocode:$(GOPATH_DIR) GOCACHE=$(GOPATH_DIR)/cache \
	    go build -o $(abspath $@) .

# A plain socket program that the client-shim tests run under LD_PRELOAD:
# it must stay free of anything of ours.
$(CLIENT_MODES): tests/integration/client_modes.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -pthread $(LDFLAGS) -o $@ $<

# The fail-closed matrix's client and server: plain socket programs like
# client_modes, free of anything of ours.
$(BUILD)/tests/fc_%: tests/failclosed/fc_%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# Writes known counters through lib/stats for the CLI test of `noiseshim stats`.
$(STATS_WRITER): $(BUILD)/tests/cli/stats_writer.o $(CORE)
	$(CC) $(LDFLAGS) -o $@ $< $(CORE) $(CRYPTO_LIBS)

# The cache tests' and benchmark's connecting program: plain libc, like client_modes.
$(CACHE_PROBE): tests/integration/cache_probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -pthread $(LDFLAGS) -o $@ $<

# Builds first flights for the replay tests and floods them for the load test.
$(FLOOD_PEER): $(BUILD)/tests/integration/flood_peer.o $(CORE)
	$(CC) $(LDFLAGS) -o $@ $< $(CORE) $(CRYPTO_LIBS) -lpthread


# An initiator that misbehaves on purpose needs the core; the idle-connection
# programs run with and without the shims, so they stay free of it.
$(HOSTILE_PEER): $(BUILD)/tests/integration/hostile_peer.o $(CORE)
	$(CC) $(LDFLAGS) -o $@ $< $(CORE) $(CRYPTO_LIBS)

$(HOSTILE_IDLE): tests/integration/hostile_idle.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# The first-flight tests' client: plain sockets too, nothing of ours.
$(FF_CLIENT): tests/integration/ff_client.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<

# The record tests' reader: plain sockets.
$(RECV_PROBE): tests/integration/recv_probe.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $<
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(CORE)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(CORE) $(CRYPTO_LIBS) -lm

$(NFQ_DELAY): $(BUILD)/bench/nfq_delay.o
	$(CC) $(LDFLAGS) -o $@ $< -lnetfilter_queue -lmnl

# On a fresh machine: install what is missing first, then build.
demo:
	examples/install-deps.sh
	$(MAKE) all
	examples/demo.sh $(BUILD)

# First what the suites need, then the suites.
test: test-deps
	$(MAKE) test-suites

test-deps:
	$(TEST_DEPS)

test-suites: test-unit test-cli test-install test-interop test-client test-cache test-server test-replay test-flood test-netns \
             test-tfo test-bench-smoke test-failclosed test-handoff test-ops test-proxy test-hostile test-firstflight \
             test-records

test-unit: $(UNIT_BIN)
	tests/run-unit.sh $(UNIT_BIN)

test-cli: $(CLI) $(STATS_WRITER) $(MAN_PAGE)
	tests/cli/test_cli.sh $(CLI) $(STATS_WRITER) $(MAN_PAGE)

# make install into a scratch prefix, then the installed command and shims at work.
test-install: all
	tests/cli/test_install.sh $(BUILD)

test-interop: $(INTEROP_C) $(GOPEER) $(SERVER_SO)
	cd $(GOPATH_DIR)/src/gopeer && GO111MODULE=off GOPROXY=off \
	    GOPATH=/usr/share/gocode:$(GOPATH_DIR) GOCACHE=$(GOPATH_DIR)/cache go test .
	tests/interop/run.sh $(INTEROP_C) $(GOPEER) $(SERVER_SO)

# Unmodified programs under the client shim against the independent Go peer.
test-client: all $(GOPEER) $(CLIENT_MODES)
	tests/integration/client.sh $(CLIENT_SO) $(GOPEER) $(CLIENT_MODES) $(CLI)

# The compiled cache under the client shim: sharing, replacement under load, fail closed.
test-cache: all $(CACHE_PROBE)
	tests/integration/cache.sh $(CLIENT_SO) $(CACHE_PROBE) $(CLI)

# Unmodified servers under the accept shim: http.server, redis, nginx, a Go
# initiator, replays, hostile input, 1,000 connections.
test-server: all $(GOPEER)
	tests/integration/server.sh $(BUILD)

# Servers that hand the accepted socket to other processes (git daemon, sshd
# with and without re-exec, an inetd-style server) and a Java server bound to
# ::ffff:127.0.0.1, under the accept shim.  sshd needs root.
test-handoff: all
	tests/integration/handoff.sh $(BUILD)

# The replay window across restarts, independent processes and hosts sharing
# a redis-server the test starts and kills.
test-replay: all $(FLOOD_PEER)
	tests/integration/replay.sh $(BUILD)

# One address floods valid first flights; another still completes handshakes.
test-flood: all $(FLOOD_PEER)
	tests/integration/flood.sh $(BUILD)

# Key rotation, the client allowlist, the per-connection log lines, syslog
# and the counters, under both shims.  The syslog check needs root (a mount
# namespace).
test-ops: all
	tests/integration/ops.sh $(BUILD)

# Hostile peers against a threaded and an event-driven server: ends and
# resets inside the handshake, stalled handshakes, the cost of waiting.
test-hostile: all $(HOSTILE_PEER)
	tests/integration/hostile.sh $(BUILD)

# Forged records, streams through every read shape, and the calls a
# stream costs (strace).
test-records: all $(HOSTILE_PEER) $(RECV_PROBE)
	tests/integration/records.sh $(BUILD)

# Needs root: network namespaces, and nfq_delay where the kernel lacks netem.
test-netns: $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/netns/test_netns.sh

# Every way bytes reach a TCP socket, crossed with how its fd came to be,
# under both shims: a cached destination never sees plaintext, a wrapped
# port never serves a plaintext client.
test-failclosed: all $(GOPEER) $(FC_CLIENT) $(FC_SERVER)
	tests/failclosed/run.py $(BUILD)

test-tfo: all $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/integration/tfo.sh $(BUILD)

# Request shapes and handshake waits (DESIGN 4.4).  The local part runs on
# loopback in a private namespace; the wan part needs the 50 ms namespaces.
test-firstflight: all $(GOPEER) $(FF_CLIENT) $(HOSTILE_PEER) $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/integration/firstflight.sh $(BUILD)

test-firstflight-local: all $(GOPEER) $(FF_CLIENT) $(HOSTILE_PEER) $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/integration/firstflight.sh --part local $(BUILD)

# noiseshim proxy between Go programs, the shims and gopeer; hostile input; the
# allowlist, key reloads and the replay window shared with restarts, a second
# proxy and the accept shim; the load guard under a flood; 50 ms RTT with TFO
# in network namespaces (root).
test-proxy: all $(GOPEER) $(FLOOD_PEER) $(HOSTILE_PEER) $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/proxy/proxy.sh $(BUILD)

sanitize: test-deps
	$(MAKE) BUILD=build/asan OPT="-O1 -g" \
	    SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    test-unit test-cli test-interop test-client test-cache test-server test-replay test-tfo test-failclosed test-handoff test-ops test-proxy test-hostile test-firstflight-local test-records

bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do taskset -c 0 $$b || exit 1; done

# Real programs under the shims (bench/*.sh print the tables).  rtt, handshake
# and the smoke run use network namespaces, so they need root.
bench-rtt: all $(NFQ_DELAY) $(FF_CLIENT)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) bench/rtt.sh --build $(BUILD)

bench-throughput: all
	bench/throughput.sh --build $(BUILD)

bench-handshake: all $(BENCH_BIN)
	bench/handshake.sh --build $(BUILD)

bench-overhead: all
	bench/overhead.sh --build $(BUILD)

# The NodeURL cache at 100k and 1M entries: build, first connect, memory, lookup cost, reload.
bench-cache: all $(CACHE_PROBE)
	bench/cache.sh --build $(BUILD)

bench-proxy: all $(GOPEER)
	bench/proxy.sh --build $(BUILD)

bench-memory: all $(HOSTILE_IDLE)
	bench/memory.sh --build $(BUILD)

test-bench-smoke: all $(NFQ_DELAY) $(FF_CLIENT)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) bench/smoke.sh --build $(BUILD)

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHIMDIR) $(DESTDIR)$(MANDIR) $(DESTDIR)$(DOCDIR)
	install -m 755 $(CLI) $(DESTDIR)$(BINDIR)/noiseshim
	install -m 644 $(CLIENT_SO) $(SERVER_SO) $(DESTDIR)$(SHIMDIR)/
	install -m 644 $(MAN_PAGE) $(DESTDIR)$(MANDIR)/noiseshim.1
	install -m 644 $(CONFIG_DOCS) $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/noiseshim $(DESTDIR)$(MANDIR)/noiseshim.1
	rm -f $(DESTDIR)$(SHIMDIR)/$(notdir $(CLIENT_SO)) $(DESTDIR)$(SHIMDIR)/$(notdir $(SERVER_SO))
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(notdir $(CONFIG_DOCS)))
	-rmdir $(DESTDIR)$(SHIMDIR) $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
