# Two commands do everything on a fresh machine: `make run` and `make test`.
# Both create .venv (and install this project into it, editable) when it is missing or stale.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= quick
DATA ?=
OUT ?=

.PHONY: run test test-fast figures chromium clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# The main job: run the five notebooks headlessly (papermill) with a parameter profile, export
# them to HTML and PDF, and write results and charts into a new folder runs/<profile>-<time>/.
#   make run                                   quick profile: embedded photos, CPU, under 10 minutes
#   make run PROFILE=study                     the study: 4 networks x 3 seeds, about 2 hours on 2 cores
#   make run PROFILE=study OUT=runs/study-...  continue a run that was cut short, where it stopped
#   make run PROFILE=full DATA=/path/to/photos the original's settings, for a GPU server
run: $(VENV)/.installed chromium
	$(BIN)/python -m lib.pipeline --profile $(PROFILE) $(if $(DATA),--data $(DATA)) $(if $(OUT),--out $(OUT))

# Refresh figures/ (the run that README shows: the study) on purpose: its charts, results files,
# pipeline.json and PDF exports. OUT=runs/study-... continues (and then publishes) a cut-short run.
figures: $(VENV)/.installed chromium
	$(BIN)/python -m lib.pipeline --profile study $(if $(OUT),--out $(OUT)) --publish

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The fast tier, for the check a contributor runs after each change: every lib module's tests,
# less those marked slow (about 90 s on 2 cores). `make test` (and CI) runs everything.
test-fast: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

# Download a public photo set into data/<name>/ (resumable, checked; see lib/datasets.py):
#   make data DATASET=places205-test   the original's photos (2.3 GB), then DATA=data/places205-test/testSet_resize
#   make data DATASET=places365-val    Places365's validation photos at 256 px, via torchvision
# Its own .PHONY line: without it, the data/ folder would make this target look up to date.
.PHONY: data
data: $(VENV)/.installed
	$(if $(DATASET),,$(error usage: make data DATASET=places205-test (or places365-val)))
	$(BIN)/python -m lib.datasets $(DATASET)

# The PDF export prints the HTML with a headless Chromium (Debian's package), its equations in the
# DejaVu math font (fonts-dejavu-extra). Install them where we can (root with apt-get); elsewhere
# say so once, and the run still writes the HTML.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the PDF export ..."; \
	    (apt-get install -y -qq chromium fonts-dejavu-extra || \
	      (apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-extra)) \
	      >/dev/null 2>&1 || echo "could not install chromium: the PDFs will be skipped"; \
	  else echo "no chromium (sudo apt-get install chromium fonts-dejavu-extra): the PDFs will be skipped"; fi

clean:
	rm -rf runs .pytest_cache
