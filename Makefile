# noiseshim build.  `make` builds into $(BUILD); `make test` runs every suite;
# `make sanitize` runs the unit and integration suites under ASan+UBSan.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SANFLAGS ?=
CFLAGS   += $(OPT) $(SANFLAGS) -std=gnu11 -Wall -Wextra -Wshadow -Wno-unused-parameter \
            -D_GNU_SOURCE -fPIC -fvisibility=hidden -MMD -MP -Ilib
LDFLAGS  += $(SANFLAGS)
CRYPTO_LIBS := -lsodium -lcrypto

LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CORE     := $(BUILD)/libnoisecore.a

SHIM_COMMON := $(filter-out shim/client.c shim/server.c,$(wildcard shim/*.c))
CLIENT_OBJ  := $(SHIM_COMMON:%.c=$(BUILD)/%.o) $(BUILD)/shim/client.o
CLIENT_SO   := $(BUILD)/libnoiseshim.so
SERVER_OBJ  := $(SHIM_COMMON:%.c=$(BUILD)/%.o) $(BUILD)/shim/server.o
SERVER_SO   := $(BUILD)/libnoiseshim-server.so
SHIM_LIBS   := $(CRYPTO_LIBS) -ldl -lpthread

CLI_SRC  := $(wildcard cli/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI      := $(BUILD)/noiseshim

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
FF_CLIENT   := $(BUILD)/tests/ff_client

.PHONY: all demo test test-unit test-cli test-interop test-netns test-client test-server test-tfo \
        test-firstflight test-firstflight-local sanitize \
        bench bench-rtt bench-throughput bench-handshake bench-overhead test-bench-smoke clean
all: $(CORE) $(CLI) $(CLIENT_SO) $(SERVER_SO)

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

$(CLI): $(CLI_OBJ) $(CORE)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(CORE) $(CRYPTO_LIBS)

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

# The first-flight tests' client: plain sockets too, nothing of ours.
$(FF_CLIENT): tests/integration/ff_client.c
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

test: test-unit test-cli test-interop test-client test-server test-netns test-tfo test-firstflight \
      test-bench-smoke

test-unit: $(UNIT_BIN)
	tests/run-unit.sh $(UNIT_BIN)

test-cli: $(CLI)
	tests/cli/test_cli.sh $(CLI)

test-interop: $(INTEROP_C) $(GOPEER)
	cd $(GOPATH_DIR)/src/gopeer && GO111MODULE=off GOPROXY=off \
	    GOPATH=/usr/share/gocode:$(GOPATH_DIR) GOCACHE=$(GOPATH_DIR)/cache go test .
	tests/interop/run.sh $(INTEROP_C) $(GOPEER)

# Unmodified programs under the client shim against the independent Go peer.
test-client: all $(GOPEER) $(CLIENT_MODES)
	tests/integration/client.sh $(CLIENT_SO) $(GOPEER) $(CLIENT_MODES) $(CLI)

# Unmodified servers under the accept shim: http.server, redis, nginx, a Go
# initiator, replays, hostile input, 1,000 connections.
test-server: all $(GOPEER)
	tests/integration/server.sh $(BUILD)

# Needs root: network namespaces, and nfq_delay where the kernel lacks netem.
test-netns: $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/netns/test_netns.sh

test-tfo: all $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/integration/tfo.sh $(BUILD)

# Request shapes and handshake waits (DESIGN 4.4).  The local part runs on
# loopback in a private namespace; the wan part needs the 50 ms namespaces.
test-firstflight: all $(GOPEER) $(FF_CLIENT) $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/integration/firstflight.sh $(BUILD)

test-firstflight-local: all $(GOPEER) $(FF_CLIENT) $(NFQ_DELAY)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) tests/integration/firstflight.sh --part local $(BUILD)

sanitize:
	$(MAKE) BUILD=build/asan OPT="-O1 -g" \
	    SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	    test-unit test-cli test-interop test-client test-server test-tfo test-firstflight-local

bench: $(BENCH_BIN)
	@for b in $(BENCH_BIN); do taskset -c 0 $$b || exit 1; done

# Real programs under the shims (bench/*.sh print the tables).  rtt, handshake
# and the smoke run use network namespaces, so they need root.
bench-rtt: all $(NFQ_DELAY) $(FF_CLIENT)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) bench/rtt.sh --build $(BUILD)

bench-throughput: all
	bench/throughput.sh --build $(BUILD)

bench-handshake: all
	bench/handshake.sh --build $(BUILD)

bench-overhead: all
	bench/overhead.sh --build $(BUILD)

test-bench-smoke: all $(NFQ_DELAY) $(FF_CLIENT)
	NETNS_NFQ_DELAY=$(abspath $(NFQ_DELAY)) bench/smoke.sh --build $(BUILD)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
