# Thin wrapper over CMake so that the two README commands work on a fresh machine.
#   make demo   install dependencies, build, run the built-in demo
#   make test   install dependencies, build (CPU, CUDA compile-only, ASan parsers), run every test
BUILD ?= build
JOBS ?= $(shell nproc)
CUDA_AVAILABLE := $(shell test -x /usr/local/cuda/bin/nvcc && echo ON || echo OFF)

.PHONY: deps build demo test test-cpu test-asan build-cuda clean

deps:
	./scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -G Ninja -DFITLM_CUDA=OFF
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./scripts/demo.sh $(BUILD)/fitlm

test-cpu: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Parsers of untrusted input (safetensors, JSON configs, tokenizer files, datasets) under
# AddressSanitizer + UBSan.
test-asan: deps
	cmake -S . -B $(BUILD)-asan -G Ninja -DFITLM_CUDA=OFF -DFITLM_ASAN=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(BUILD)-asan -j $(JOBS) --target fitlm_tests
	$(BUILD)-asan/tests/fitlm_tests --gtest_filter='Safetensors*:Sharded*:ModelConfig*:Tokenizer*:Dataset*:Csv*:Jinja*:ChatTemplate*'

# The CUDA backend must compile and link warning-free even where no GPU can run it (the CPU
# test binary is already built and run by test-cpu).
build-cuda: deps
	@if [ "$(CUDA_AVAILABLE)" = ON ]; then \
	  cmake -S . -B $(BUILD)-cuda -G Ninja -DFITLM_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 && \
	  cmake --build $(BUILD)-cuda -j $(JOBS) --target fitlm fitlm_cuda_tests; \
	else echo "no CUDA toolkit at /usr/local/cuda: skipping the CUDA build"; fi

test: test-cpu test-asan build-cuda

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-cuda
