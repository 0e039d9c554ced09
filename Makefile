# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv (and install this project into it, editable) when it is missing or stale.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The main job: train the ResNet-18 colorizer on the embedded photos (offline, CPU is enough),
# then print its validation metrics next to the gray baseline's.
run: $(VENV)/.installed
	$(BIN)/python -m lib.train --model resnet18 --data builtin --size 64 --epochs 10

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

clean:
	rm -rf runs data/builtin .pytest_cache
