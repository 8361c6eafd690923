# Two set-up commands work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install data debian-data demo test bench lint clean

# Training settings of `make demo` (the default model on Fashion-MNIST)
DEMO_ARGS ?= --model fmnist-cnn --epochs 10 --batch-size 64 --dropout 0.3 --learning-rate 2e-3 --lr-decay 0.75

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[numba,plots,dev,onnx]'
	touch $(STAMP)

install: $(STAMP)

# The suite checks the real Fashion-MNIST files against the pinned hashes where
# Debian's package is installed; where apt cannot install it, those tests skip
# and say what is unverified.
test: $(STAMP) debian-data
	$(PY) -m pytest -q

# Debian's dataset-fashion-mnist, where apt works as root; nothing otherwise.
debian-data:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
	  || echo "apt could not install dataset-fashion-mnist"; \
	fi

# Fashion-MNIST: Debian's package where apt works (as root), else the verified download.
data: $(STAMP) debian-data
	$(PY) -c "from convnet.datasets import fashion_mnist as f; f.load_data(); print('Fashion-MNIST ready')"

demo: data
	$(PY) -m convnet train fashion_mnist $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(PY) -m ruff check convnet tests benchmarks examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
