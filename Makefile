# `make study` runs the whole study of one profile; `make test` runs the checks.
# The profile: PROFILE=..., else $DNNLS_PROFILE, else subset. The data: the library finds it ($DNNLS_DATA_DIR,
# the shared subset beside the project, Keras' cache; `run` downloads what the profile needs).
PROFILE ?= $(or $(DNNLS_PROFILE),subset)
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: study study-unchanged figures report test bench bundle rehearse

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	$(PYTHON) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

study: $(STAMP)
	$(PYTHON) -m dnnls_tf run all --profile $(PROFILE)
	$(PYTHON) -m dnnls_tf figures --profile $(PROFILE)
	$(PYTHON) -m dnnls_tf report --profile $(PROFILE)

# On a complete store, `make study` trains nothing and writes the same files again (the PDF's date is fixed):
# this fails if it changed anything under results/, figures/ or report/ (for CI, once the outputs are current).
study-unchanged: study
	@test -z "$$(git status --porcelain -- results figures report)" || \
	  { git status --short -- results figures report; echo "make study changed the files above"; exit 1; }

figures: $(STAMP)
	$(PYTHON) -m dnnls_tf figures --profile $(PROFILE)

report: $(STAMP)
	$(PYTHON) -m dnnls_tf report --profile $(PROFILE)

bench: $(STAMP)
	$(PYTHON) -m dnnls_tf bench --json results/bench.json

# Unit tests on both cores (pytest-xdist; the slow ones too: kills, two writers, Ctrl-C, the quick rehearsal,
# and the Colab rehearsal, which trains the quick store on its fake Drive in QUICK_DRIVE), then the three
# notebooks under nbval on that store with DNNLS_PROFILE=quick (they train only what the rehearsal did not,
# so the quick store is trained once), then its figures and report (all in build/, so committed results stay).
QUICK_DRIVE ?= $(CURDIR)/build/quick-drive
QUICK_ROOT ?= $(QUICK_DRIVE)/MyDrive/dnnls_tf
TEST_WORKERS ?= 2
test: $(STAMP)
	rm -rf $(QUICK_DRIVE) $(QUICK_ROOT)
	DNNLS_TEST_REHEARSAL_DRIVE=$(QUICK_DRIVE) $(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15 tests
	DNNLS_PROFILE=quick DNNLS_ROOT=$(QUICK_ROOT) $(PYTHON) -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks
	$(PYTHON) -m dnnls_tf figures --profile quick --root $(QUICK_ROOT) > /dev/null
	$(PYTHON) -m dnnls_tf report --profile quick --root $(QUICK_ROOT)

bundle: $(STAMP)
	$(PYTHON) -m dnnls_tf bundle --profile $(PROFILE)

rehearse: $(STAMP)
	$(PYTHON) -m dnnls_tf rehearse --profile full
