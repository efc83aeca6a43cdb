# Thin wrapper over CMake: the real build lives in CMakeLists.txt.
# `make test` and `make demo` are the two commands a newcomer needs.

MAKEFLAGS  += --no-print-directory
BUILD      ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps configure build test unit asan fuzz format format-check \
	demo bench bare docs install clean

all: build

deps:
	@scripts/deps.sh

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

# Unit tests only (fast, no servers).
unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

# The unit tests under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCG_SANITIZE=ON \
		-DCMAKE_C_COMPILER=clang >/dev/null
	@cmake --build build-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS) -L unit

# libFuzzer over the contact parser and the rules, seeded from the fixtures.
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCG_FUZZ=ON \
		-DCG_TESTS=OFF -DCMAKE_C_COMPILER=clang >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_contacts
	@tests/fuzz/run.sh build-fuzz/tests/fuzz/fuzz_contacts $(FUZZ_SECONDS)

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	@clang-format -i $(FORMAT_FILES)

format-check: deps
	@clang-format --dry-run --Werror $(FORMAT_FILES) && \
		echo "format-check: $(words $(FORMAT_FILES)) files clean"

demo: build
	@deploy/local/demo.sh $(BUILD)

bench: deps
	@cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build-release -j $(JOBS)
	@tests/bench/run.sh build-release

# README's Quick start, run as root in a fresh minimal Debian 12 root file
# system (tests/bare/run.sh). A machine that cannot make one (not root, no
# archive) prints SKIPPED and why; that is not a failure here.
bare:
	@scripts/deps.sh mmdebstrap
	@tests/bare/run.sh || [ $$? -eq 77 ]

# Regenerates the option table in docs/configuration.md from the code.
docs: build
	@$(BUILD)/tests/unit/test_config_doc --write docs/configuration.md

install: build
	@cmake --install $(BUILD)

clean:
	@rm -rf $(BUILD) build-asan build-fuzz build-release
