# Thin wrapper over CMake so that the two README commands work on a fresh machine.
#   make demo   install dependencies, build, run the built-in demo
#   make test   install dependencies, build (CPU, CUDA compile-only, ASan parsers, fuzz
#               targets), run every test and the fuzz regression
#   make fuzz-campaign MINUTES=15   fuzz every parser (docs/fuzzing.md)
BUILD ?= build
JOBS ?= $(shell nproc)
CUDA_AVAILABLE := $(shell test -x /usr/local/cuda/bin/nvcc && echo ON || echo OFF)
FUZZ_BUILD ?= $(BUILD)-fuzz
MINUTES ?= 15

.PHONY: deps deps-fuzz build demo test test-cpu test-asan build-cuda fuzz-build fuzz-regress \
  fuzz-campaign fuzz-findings clean

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DFITLM_CUDA=OFF
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)/fitlm

test-cpu: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Parsers of untrusted input (safetensors, JSON configs, tokenizer files, datasets, chat
# templates, 4-bit quantization, training configs, Unigram charsmaps and SentencePiece .model
# files) under
# AddressSanitizer + UBSan.
test-asan: deps
	cmake -S . -B $(BUILD)-asan -G Ninja -DFITLM_CUDA=OFF -DFITLM_ASAN=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan -j $(JOBS) --target fitlm_tests
	$(BUILD)-asan/tests/fitlm_tests --gtest_filter='Safetensors*:Sharded*:MalformedSafetensors*:BrokenIndex*:ModelConfig*:Tokenizer*:Dataset*:Csv*:Jinja*:ChatTemplate*:JsonInput*:Paths*:Quant4*:TrainConfig*:Unigram*:Precompiled*:SentencePieceModel*:Metaspace*:Vision*:PipelineStages*:PipelineSchedule*:StagePartition*:OffloadActivations*'

# The CUDA backend must compile and link warning-free even where no GPU can run it (the CPU
# test binary is already built and run by test-cpu).
build-cuda: deps
	@if [ "$(CUDA_AVAILABLE)" = ON ]; then \
	  cmake -S . -B $(BUILD)-cuda -G Ninja -DFITLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 && \
	  cmake --build $(BUILD)-cuda -j $(JOBS) --target fitlm fitlm_cuda_tests; \
	else echo "no CUDA toolkit at /usr/local/cuda: skipping the CUDA build"; fi

# libFuzzer targets (fuzz/, docs/fuzzing.md): clang, ASan + UBSan, CPU only; builds only the
# targets and the library.
deps-fuzz:
	./scripts/install-deps.sh --fuzz

fuzz-build: deps-fuzz
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DFITLM_FUZZ=ON -DFITLM_CUDA=OFF -DBUILD_TESTING=OFF \
	  -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fitlm_fuzz_targets

# Each target over its seed corpus plus 10 s of fixed-seed fuzzing; fails on any finding.
fuzz-regress: fuzz-build
	./scripts/fuzz.sh regress $(FUZZ_BUILD)

# Each target for MINUTES, at most $(JOBS) at once: logs and crashes in $(FUZZ_BUILD)/campaign/.
fuzz-campaign: fuzz-build
	FUZZ_JOBS=$(JOBS) ./scripts/fuzz.sh campaign $(MINUTES) $(FUZZ_BUILD)

# Replays fuzz/findings/ (known, unfixed crashes): lists which still fail.
fuzz-findings: fuzz-build
	./scripts/fuzz.sh findings $(FUZZ_BUILD)

test: test-cpu test-asan build-cuda fuzz-regress

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-cuda $(FUZZ_BUILD)
