# segsem_lite: two commands on a fresh machine, `make book` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.setup-done
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
SAM2_PIN := sam2==1.1.0

.PHONY: setup test book data-samples bench clean

setup: $(STAMP)

# Idempotent: rebuilt only when the project's requirements change.
# torch first; then sam2 built against it without build isolation (an isolated build
# would download a second torch); then the package, editable, with its extras.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" "setuptools>=69" wheel
	$(PIP) install -q $(TORCH_PIN)
	$(PY) -c "import sam2" 2>/dev/null || SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation $(SAM2_PIN)
	$(PIP) install -q -e ".[book,dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	bash .ci/install-chromium
	touch $(STAMP)

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile tests

book: setup
	$(VENV)/bin/jupyter-book build . -W --keep-going

data-samples: setup
	$(VENV)/bin/segsem synth --out data_samples --n-per-case 6 --seed 2025 --test-per-case 1

bench: setup
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf _build
