# Two commands do all set-up on a fresh Debian machine, as root:
#   make demo   brings up an emulated fabric, steers real traffic, tears down
#   make test   runs every test
# Both install what is missing (Debian packages, a .venv) and are safe to repeat.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := openvswitch-switch iproute2 iputils-ping ethtool iperf3 tcpdump libvirt-dev pkg-config
PYTEST_ARGS ?=

.PHONY: demo test bench lint system-deps clean

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): setup.cfg pyproject.toml
	$(MAKE) system-deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,xen]'
	touch $(STAMP)

test: system-deps $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: system-deps $(STAMP)
	$(VENV)/bin/clicksteer demo

bench: system-deps $(STAMP)
	@set -e; for b in bench/*.py; do echo "== $$b"; $(PY) $$b; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis .ruff_cache
