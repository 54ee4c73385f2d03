# NoriKV: the README's commands. CMake does the real work; see CMakeLists.txt.
#   make          build (installs missing Debian packages first)
#   make run      build and start a one-node server on the default addresses
#   make test     every test: C unit, simulation, integration, SDKs, sanitizers
#   make bench    every benchmark (by hand; prints comparison tables)

BUILD      ?= build
ASAN_BUILD ?= build-asan
JOBS       ?= $(shell nproc)
CTEST_ARGS ?=
CMAKE_GEN  := -G Ninja

.PHONY: all deps build run test test-c test-asan test-sdk test-go test-python test-typescript test-java \
        bench bench-engine bench-server bench-raft bench-wal fuzz hash-vectors format clean bench-vector bench-vector-server

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@if [ ! -x $(BUILD)/src/server/norikv-server ]; then \
	  echo "norikv-server is not built yet (src/server is missing)"; exit 1; fi
	$(BUILD)/src/server/norikv-server --data-dir ./norikv-data $(ARGS)

test: test-c test-asan test-sdk
	@echo "make test: all suites passed"

test-c: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) $(CTEST_ARGS)

$(ASAN_BUILD)/build.ninja: | deps
	cmake -S . -B $(ASAN_BUILD) $(CMAKE_GEN) -DCMAKE_BUILD_TYPE=Debug -DNK_SANITIZE=ON -DNK_BENCH=OFF

# The sanitizer build runs the unit tests (label "unit": every module's own
# tests and the fuzz drivers) and the server integration suite against the
# sanitized server (label "asan").
test-asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_BUILD) --output-on-failure -j $(JOBS) -L "unit|asan"

test-sdk: test-go test-python test-typescript test-java

test-go: build
	@if [ -f clients/go/go.mod ]; then \
	  cd clients/go && NORIKV_SERVER_BIN=$(CURDIR)/$(BUILD)/src/server/norikv-server NORIKV_REQUIRE_CLUSTER=1 go test -race -count=1 ./...; \
	else echo "test-go: no Go SDK yet"; fi

test-python: build
	@if [ -f clients/python/pyproject.toml ]; then \
	  NORIKV_SERVER_BIN=$(CURDIR)/$(BUILD)/src/server/norikv-server NORIKV_REQUIRE_CLUSTER=1 ./clients/python/run-tests.sh; \
	else echo "test-python: no Python SDK yet"; fi

# npm ci runs only when clients/typescript/package-lock.json changed since the
# last install (run-tests.sh keeps a stamp in node_modules/).
test-typescript: build
	@if [ -f clients/typescript/package.json ]; then \
	  NORIKV_SERVER_BIN=$(CURDIR)/$(BUILD)/src/server/norikv-server NORIKV_REQUIRE_CLUSTER=1 ./clients/typescript/run-tests.sh; \
	else echo "test-typescript: no TypeScript SDK yet"; fi

# Java SDK: Maven verify (gRPC code generated from the proto, unit tests, tests
# against the real server). Prints Surefire's summary; Maven's log stays in
# clients/java/target/mvn-test.log.
test-java: build
	@if [ -f clients/java/pom.xml ]; then \
	  NORIKV_SERVER_BIN=$(CURDIR)/$(BUILD)/src/server/norikv-server NORIKV_REQUIRE_SERVER=1 NORIKV_REQUIRE_CLUSTER=1 ./clients/java/run-tests.sh; \
	else echo "test-java: no Java SDK yet"; fi

bench: bench-engine bench-raft bench-server bench-wal

bench-engine: build
	@if [ -x $(BUILD)/bench/bench_engine ]; then $(BUILD)/bench/bench_engine $(ARGS); \
	else echo "bench-engine: not built yet"; fi

bench-raft: build
	@if [ -x $(BUILD)/bench/bench_raft ]; then $(BUILD)/bench/bench_raft $(ARGS); \
	else echo "bench-raft: not built yet"; fi

bench-wal: build
	@if [ -x $(BUILD)/bench/wal/bench_wal ]; then \
	  $(BUILD)/bench/wal/bench_wal --dir $(BUILD)/bench-wal-data $(ARGS); \
	else echo "bench-wal: not built yet"; fi

# One metric operation against a plain atomic and a mutex (docs/benchmarks.md).
bench-observe: build
	@if [ -x $(BUILD)/bench/observe/bench_observe ]; then $(BUILD)/bench/observe/bench_observe $(ARGS); \
	else echo "bench-observe: not built yet"; fi

# SWIM failure detection in simulation: detection time, load, false positives.
# Time to add a fourth node to a 3-node cluster holding 2 GB and to drain
# it, with client p99 during the moves against before (docs/membership.md).
.PHONY: bench-membership
bench-membership: build
	bench/membership/run.sh $(BUILD) $(ARGS)

.PHONY: bench-swim
bench-swim: build
	@if [ -x $(BUILD)/bench/bench_swim ]; then $(BUILD)/bench/bench_swim $(ARGS); \
	else echo "bench-swim: not built yet"; fi

# Vector indexes against hnswlib and FAISS (Python venv under bench/vector/.venv,
# installed from PyPI on first use). VECTOR_SETS="N:DIMS ..." picks the data sets.
bench-vector: build
	@if [ -x bench/vector/run.sh ]; then bench/vector/run.sh $(BUILD); \
	else echo "bench-vector: not built yet"; fi

# End-to-end vector search through norikv-server vs the same index in-process.
bench-vector-server: build
	bench/vector/run_server.sh $(BUILD) $(ARGS)

# The Raft simulator over random seeds for SECONDS (default 60); every run
# prints its seed, a failure prints the seed to replay with --seed.
sim-soak: build
	$(BUILD)/tests/sim/raft_sim --seconds $(if $(SECONDS),$(SECONDS),60)

bench-server: build
	@if [ -x bench/server/run.sh ]; then bench/server/run.sh $(BUILD) $(ARGS); \
	else echo "bench-server: not built yet"; fi

# 3-node NoriKV cluster vs 3-member etcd, failover, idle CPU, memory (by hand).
.PHONY: bench-cluster
bench-cluster: build
	@if [ -x bench/server/cluster.sh ]; then bench/server/cluster.sh $(BUILD) $(ARGS); \
	else echo "bench-cluster: not built yet"; fi

# Range scans and watch vs etcd (issue 12; by hand): one node / one member,
# same Python gRPC client code for both (bench/rangewatch/run.sh).
.PHONY: bench-range
bench-range: build
	bench/rangewatch/run.sh $(BUILD) $(ARGS)

# libFuzzer targets (clang); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 30
fuzz: deps
	CC=clang cmake -S . -B build-fuzz $(CMAKE_GEN) -DNK_FUZZ=ON -DNK_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build build-fuzz -j $(JOBS)
	@for f in build-fuzz/tests/fuzz/*/fuzz_*; do \
	  [ -x "$$f" ] || continue; echo "== $$f"; \
	  mkdir -p build-fuzz/corpus/$$(basename $$f); \
	  $$f -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus/$$(basename $$f) || exit 1; \
	done

hash-vectors: build
	$(BUILD)/tools/hashvec > testdata/hash-vectors.json

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'tools/*.c' 'bench/*.c')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

# The cluster fault-testing harness's long run (docs/testing-clusters.md):
# a 3-node cluster under a seeded schedule of kills, pauses and partitions
# for SECONDS (default 300) while checked clients run; the history is
# checked with Porcupine. NORIKV_CHAOS_SEED=<seed> replays a schedule.
.PHONY: chaos
chaos: build
	cd tests/cluster && NORIKV_SERVER_BIN=$(CURDIR)/$(BUILD)/src/server/norikv-server \
	  NORIKV_CHAOS_SECONDS=$(if $(SECONDS),$(SECONDS),300) \
	  go test -count=1 -v -timeout 0 -run 'TestChaos$$' .
