# dssgd: distributed selective SGD parameter server (Shokri & Shmatikov, CCS 2015).
#
#   make              builds build/dssgd
#   make unit         builds and runs the unit tests (no MPI, about 10 s)
#   make check        the whole suite, what CI runs (about 13 minutes on 2 cores)
#   make demo         a real DSSGD training on Fashion-MNIST (about 15 s)
#   make bench        every benchmark figure next to its reference (about 3.5 min; results/bench/README.md)
#   make check-slurm  the SLURM job scripts on a one-node cluster (root)
#   make deps         installs the missing Debian packages (.ci/install-deps)
#   make clean
#
# Packages: check, check-slurm, demo, bench and deps first run .ci/install-deps,
# which installs what is missing with apt-get (as root, or through sudo).
# `make` and `make unit` install nothing: when a package is missing they stop
# before compiling, name it, and ask you to run `make deps`.

# ---- user options -------------------------------------------------------
# SANITIZE=address   build with AddressSanitizer + UndefinedBehaviorSanitizer
# OPT=...            optimisation flags (default -O3 -march=native)
# DEPS=no            never call .ci/install-deps (you manage packages yourself)
# BUILD=dir          build directory (default build)
SANITIZE ?=
OPT      ?= -O3 -march=native
DEPS     ?= yes
# --------------------------------------------------------------------------

BUILD    := build
ifeq ($(origin CC),default)
CC := mpicc
endif
PKGS     := hdf5-openmpi zlib openblas
CFLAGS   += -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g \
            -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter \
            -Iinclude -MMD -MP
LDLIBS   += -lm
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE),undefined -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE),undefined
endif

# Recursive (=): pkg-config runs in the recipes, after any install step.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

SRCS     := $(wildcard src/*.c)
LIB_OBJS := $(patsubst src/%.c,$(BUILD)/%.o,$(filter-out src/main.c,$(SRCS)))
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
# The unit tests: every test binary that runs without mpirun, each in a few
# seconds (tests/run-tests.sh and tests/run-sanitized.sh pick them the same way).
UNIT_TESTS := $(filter-out $(BUILD)/tests/test_mpi,$(TESTS))
BENCH    := $(BUILD)/bench

.PHONY: all unit deps check check-slurm demo bench clean have-deps have-test-deps
all: $(BUILD)/dssgd

# ---- packages -------------------------------------------------------------
# The goals that install what is missing before compiling. The stamp records
# that .ci/install-deps ran since it last changed.
INSTALL_GOALS := deps check check-slurm demo bench
DEPS_STAMP    := $(BUILD)/.deps-ok
ifneq ($(filter $(INSTALL_GOALS),$(MAKECMDGOALS)),)
DEPS_FIRST := $(DEPS_STAMP)
endif

deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/install-deps
	@mkdir -p $(@D)
ifeq ($(DEPS),yes)
	@bash .ci/install-deps
endif
	@touch $@

# $(call need,MODULES): stops make, naming them, if the compiler, pkg-config
# or one of these pkg-config modules is missing. Installs nothing.
define need
missing=""; \
command -v $(firstword $(CC)) >/dev/null 2>&1 || missing=" $(firstword $(CC))"; \
if command -v pkg-config >/dev/null 2>&1; then \
  for m in $(1); do pkg-config --exists $$m || missing="$$missing $$m"; done; \
else missing="$$missing pkg-config"; fi; \
if [ -n "$$missing" ]; then \
  echo "make: missing:$$missing" >&2; \
  echo "make: run 'make deps' to install the Debian packages (apt-get, through sudo" \
       "when not root), or install them yourself (list in .ci/install-deps)." >&2; \
  exit 1; \
fi
endef

# Checked before any compiling (after the install step on INSTALL_GOALS),
# so a missing package reads as one clear line, not a compiler error.
have-deps: | $(DEPS_FIRST)
	@$(call need,$(PKGS))
have-test-deps: | have-deps
	@$(call need,cmocka)

# ---- build ----------------------------------------------------------------
$(BUILD)/%.o: src/%.c | have-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c | have-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests -c $< -o $@

$(BUILD)/tests/test_%.o: tests/test_%.c | have-test-deps
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests -c $< -o $@

$(BUILD)/dssgd: $(BUILD)/main.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(LDLIBS) -o $@

$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(CMOCKA_LIBS) $(LDLIBS) -o $@

$(BUILD)/bench: $(BUILD)/tests/bench.o $(BUILD)/tests/bench_select.o $(BUILD)/tests/bench_wire.o \
               $(LIB_OBJS)
	$(CC) $(LDFLAGS) $^ $(PKG_LIBS) $(LDLIBS) -o $@

# ---- run --------------------------------------------------------------------
# The unit tests alone, in seconds (the first part of `make check`).
unit: $(UNIT_TESTS)
	@bash tests/run-tests.sh $(BUILD) unit

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
# results/bench/<date>.csv (see results/bench/README.md). About 3.5 minutes.
bench: $(BUILD)/bench $(BUILD)/dssgd
	@OPENBLAS_NUM_THREADS=1 bash tests/bench-run.sh $(BUILD)

clean:
	rm -rf $(BUILD)

-include $(wildcard $(BUILD)/*.d $(BUILD)/tests/*.d)
