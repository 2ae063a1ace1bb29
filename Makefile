# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install system-deps demo test test-fast bench clean

# Debian packages the tests use for real: the MQTT broker, the speech synthesiser of the keyword corpus,
# the microcontroller line: QEMU's Cortex-M4F board and the arm-none-eabi toolchain with newlib; and clang's
# libFuzzer with its sanitizer runtimes for fuzzing the C wire and serial parsers (bench/fuzz.py); and Debian's
# chromium with its chromedriver, which the fleet console's browser tests drive through selenium (never a download).
system-deps:
	@missing=""; \
	  { test -x /usr/sbin/mosquitto || command -v mosquitto >/dev/null; } || missing="$$missing mosquitto"; \
	  command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	  command -v qemu-system-arm >/dev/null || missing="$$missing qemu-system-arm"; \
	  command -v arm-none-eabi-gcc >/dev/null || missing="$$missing gcc-arm-none-eabi"; \
	  test -f /usr/lib/arm-none-eabi/newlib/libc.a || missing="$$missing libnewlib-arm-none-eabi"; \
	  command -v clang-14 >/dev/null || missing="$$missing clang-14"; \
	  ls /usr/lib/llvm-14/lib/libFuzzer.a >/dev/null 2>&1 || missing="$$missing libfuzzer-14-dev"; \
	  ls /usr/lib/llvm-14/lib/clang/14*/lib/linux/libclang_rt.asan-x86_64.a >/dev/null 2>&1 || missing="$$missing libclang-rt-14-dev"; \
	  test -x /usr/bin/chromium || missing="$$missing chromium"; \
	  test -x /usr/bin/chromedriver || missing="$$missing chromium-driver"; \
	  if [ -n "$$missing" ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) || \
	    { echo "install Debian's$$missing (apt-get install$$missing) and retry" >&2; exit 1; }; \
	  fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/tinyfleet demo

test: install system-deps
	$(BIN)/python -m pytest -q --durations=25

test-fast: install system-deps
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf runs .pytest_cache
