# mirrorwatch: every target sets itself up on a fresh Debian machine (run as root).
#   make demo    replay the bundled demo capture with the bundled signatures
#   make test    run the test suite
#   make verify  run the suricata-verify cases of the corpus
#   make bench   run every benchmark in bench/
#   make fuzz    run every fuzz target (fuzz/) for FUZZ_SECONDS each, corpora kept in .fuzz/
# Set-up is idempotent: system packages are installed only when missing, the
# virtualenv is rebuilt only when setup.cfg/pyproject.toml/setup.py change (stamp file), and the
# compiled per-packet modules (a .pxd beside the .py, see setup.py) again when one of them changes.
# MIRRORWATCH_PURE=1 make ... installs without compiling (the same files run interpreted).

# Debian's own python3.11 when it is there: it is built with PGO and LTO, and the engine runs
# ~10% faster on it than on a default pyenv build (--enable-shared, no --enable-optimizations).
PYTHON  ?= $(firstword $(wildcard /usr/bin/python3.11) python3.11)
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.mirrorwatch-installed
SYSSTAMP := $(VENV)/.mirrorwatch-system
BASE    := $(VENV)/.mirrorwatch-python
export DEBIAN_FRONTEND := noninteractive

# a virtualenv made from another interpreter is made again
ifneq ($(wildcard $(PY)),)
ifneq ($(shell cat $(BASE) 2>/dev/null),$(shell command -v $(PYTHON) 2>/dev/null))
$(info $(VENV) was made from another Python than $(PYTHON): making it again)
$(shell rm -rf $(VENV))
endif
endif

# command-or-file to test for -> Debian package that provides it
SYSTEM_DEPS := \
	/usr/include/pcap.h:libpcap-dev \
	tshark:tshark \
	tcpflow:tcpflow \
	tcpreplay:tcpreplay \
	tcpdump:tcpdump \
	curl:curl \
	openssl:openssl \
	dig:bind9-dnsutils \
	/usr/sbin/dnsmasq:dnsmasq-base \
	ip:iproute2 \
	tc:iproute2 \
	tmux:tmux \
	redis-server:redis-server \
	iptables:iptables \
	nft:nftables \
	iperf3:iperf3 \
	c++:build-essential

.PHONY: all setup system demo test verify bench fuzz clean distclean

all: test

setup: $(STAMP)

# Installs only what is missing; `apt-get update` runs once, only if something is.
system:
	@missing=""; \
	for dep in $(SYSTEM_DEPS); do \
	  what=$${dep%%:*}; pkg=$${dep##*:}; \
	  case $$what in /*) [ -e "$$what" ] ;; *) command -v "$$what" >/dev/null 2>&1 ;; esac \
	    || missing="$$missing $$pkg"; \
	done; \
	if ! command -v $(PYTHON) >/dev/null 2>&1; then missing="$$missing python3.11"; fi; \
	if command -v $(PYTHON) >/dev/null 2>&1 && ! $(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	  missing="$$missing python3.11-venv"; fi; \
	if command -v $(PYTHON) >/dev/null 2>&1 && ! $(PYTHON) -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' >/dev/null 2>&1; then \
	  missing="$$missing python3.11-dev"; fi; \
	if [ -n "$$missing" ]; then \
	  missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	  echo "installing missing system packages: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: need root to apt-get install $$missing" >&2; exit 1; fi; \
	  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections 2>/dev/null || true; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(PY):
	@$(MAKE) --no-print-directory system
	$(PYTHON) -m venv $(VENV)
	@command -v $(PYTHON) > $(BASE)

# the compiled modules' sources: each .pxd and the .py beside it
COMPILED_SRC := $(shell find mirrorwatch -name '*.pxd' 2>/dev/null | sed 'p;s/\.pxd$$/.py/')

$(STAMP): setup.cfg pyproject.toml setup.py $(COMPILED_SRC) | $(PY)
	@$(MAKE) --no-print-directory system
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	@mkdir -p out && rm -f out/demo-eve.json out/demo-fast.log
	$(VENV)/bin/mirrorwatch replay --eve out/demo-eve.json --fast out/demo-fast.log pcaps/demo.pcap
	@echo "EVE log: out/demo-eve.json   fast.log: out/demo-fast.log"

test: $(STAMP)
	$(PY) -m pytest -q

verify: $(STAMP)
	$(PY) tests/suricata_verify.py

bench: $(STAMP)
	PY=$(PY) bash bench/run_all.sh

FUZZ_SECONDS ?= 600
FUZZ_TARGETS := decoder reassembly rules
fuzz: $(STAMP)
	@for t in $(FUZZ_TARGETS); do \
	  echo "fuzzing $$t for $(FUZZ_SECONDS)s (corpus .fuzz/$$t)"; \
	  $(PY) fuzz/run.py $$t --seconds $(FUZZ_SECONDS) || exit 1; \
	done

clean:
	rm -rf out .pytest_cache .hypothesis build dist pcaps/generated .bench
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
	find mirrorwatch \( -name '*.so' -o -name '*.c' \) -delete
	rm -f $(STAMP)

distclean: clean
	rm -rf $(VENV) *.egg-info
