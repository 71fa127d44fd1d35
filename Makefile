# dssgd: distributed selective SGD parameter server (Shokri & Shmatikov, CCS 2015).
# `make` builds build/dssgd; `make check` runs the tests; `make demo` a real training.

# ---- user options -------------------------------------------------------
# SANITIZE=address   build with AddressSanitizer + UndefinedBehaviorSanitizer
# OPT=...            optimisation flags (default -O3 -march=native)
# DEPS=no            do not call .ci/install-deps (you manage packages yourself)
SANITIZE ?=
OPT      ?= -O3 -march=native
DEPS     ?= yes
# --------------------------------------------------------------------------

ifeq ($(origin CC),default)
CC := mpicc
endif
BUILD    := build
PKGS     := hdf5-openmpi zlib openblas
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g \
            -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
            -Iinclude -MMD -MP
LDLIBS   += -lm
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE),undefined -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE),undefined
endif

# pkg-config runs only after the dependencies are installed (see deps stamp).
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

SRCS     := $(wildcard src/*.c)
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/%.o,$(filter-out src/main.c,$(SRCS)))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
BENCH    := $(BUILD)/bench

DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps check check-slurm demo bench clean
all: $(BUILD)/dssgd

deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/install-deps
	@mkdir -p $(BUILD)
ifeq ($(DEPS),yes)
	@bash .ci/install-deps
endif
	@touch $@

$(BUILD)/%.o: src/%.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c | $(DEPS_STAMP)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests -c $< -o $@

$(BUILD)/dssgd: $(BUILD)/main.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(LDLIBS) -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(CMOCKA_LIBS) $(LDLIBS) -o $@

$(BUILD)/bench: $(BUILD)/tests/bench.o $(BUILD)/tests/bench_select.o $(BUILD)/tests/bench_wire.o \
               $(LIB_OBJS)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(LDLIBS) -o $@

# The whole suite: unit tests, then MPI and end-to-end tests.
check: $(BUILD)/dssgd $(TESTS)
	@bash tests/run-tests.sh $(BUILD)

# The SLURM job scripts under a real one-node cluster (root; about 3 minutes;
# installs SLURM if missing). Part of `make check` too.
check-slurm: $(BUILD)/dssgd
	@bash tests/slurm/test-slurm.sh $(BUILD)

# A real DSSGD training on Fashion-MNIST (see README).
demo: $(BUILD)/dssgd
	@bash tests/demo.sh $(BUILD)

# Every figure next to its reference, measured in one run: the table, and
# results/bench/<date>.csv (see results/bench/README.md). About 2 minutes.
bench: $(BUILD)/bench $(BUILD)/dssgd
	@OPENBLAS_NUM_THREADS=1 bash tests/bench-run.sh $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/*.d $(BUILD)/tests/*.d)
