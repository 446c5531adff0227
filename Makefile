# The course's commands. `make lab` and `make test` are the two the README gives.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# nbval reads every message a kernel sends: slow progress bars keep that stream small
QUIET  := TQDM_MININTERVAL=5

.PHONY: install grade-tools lab test unit notebooks bench bench-cold bench-binder models clean-notebooks student assignments site

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(VENV)/.installed     ## install tutorlib (editable) and the test tools into .venv

# A .venv made earlier by a Python older than 3.10 (macOS's own python3 is 3.9) cannot take the
# course: say so and how to fix it, instead of pip's "requires a different Python".
PYTHON_OK = $(BIN)/python -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { \
	echo "$(VENV) was made with $$($(BIN)/python -V 2>&1), and the course needs Python 3.10 or newer."; \
	echo "Install one (python.org, Homebrew: brew install python@3.11), then rebuild the environment:"; \
	echo "    rm -rf $(VENV) && make install PYTHON=python3.11"; exit 1; }

# reinstalls only when the package's requirements change
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@$(PYTHON_OK)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,lab]"
	$(BIN)/python -m scripts.lab_settings
	touch $@

# nbgrader (its JupyterLab menus are for instructors): for make assignments and make test only
grade-tools: $(VENV)/.grade-installed
$(VENV)/.grade-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install -q -e ".[grade]"
	touch $@

LAB_FLAGS ?=
AS_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)   # JupyterLab refuses root (containers) without it
# the server's root is the repository (each lesson's links to its quiz and guide in lessons/
# resolve), and it opens on notebooks/
lab: install                    ## open the course in JupyterLab (LAB_FLAGS="--no-browser --port=8890" to pass options)
	$(BIN)/jupyter lab $(AS_ROOT) $(LAB_FLAGS) --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks

# The test command itself is scripts/test.py, so that a machine without make (Windows) runs
# the same one: `python -m scripts.test`. It spreads the test files over JOBS processes
# (pytest-xdist; one notebook stays in one process), each torch on one thread.
JOBS   ?= 2

test: install grade-tools       ## everything: unit and slow tests, and every notebook end to end with each cell run twice (quick profile)
	$(BIN)/python -m scripts.test --jobs $(JOBS)

# Tests marked slow (the marker is registered in tests/conftest.py) run a whole notebook, start
# JupyterLab or drive a browser: `make test` runs them, `make unit` leaves them out.
unit: install                   ## the library's tests alone, in a couple of minutes: no slow tests, no notebooks
	$(BIN)/python -m scripts.test --unit

notebooks: install              ## notebooks only, each cell run once (the quick check while editing one)
	$(BIN)/python -m scripts.test --notebooks

bench: install                  ## wall time and peak memory of every notebook, render and training throughput
	$(OFFLINE) $(BIN)/python -m scripts.benchmark

bench-cold: install             ## every notebook from an empty cache, as on a fresh Colab or Binder session
	$(OFFLINE) $(BIN)/python -m scripts.benchmark --cold --no-throughput

bench-binder: install           ## every notebook on one CPU core from the cache Binder's image ships, as a student meets it
	$(OFFLINE) $(BIN)/python -m scripts.benchmark --binder --no-throughput --report lessons/benchmarks/binder.md

models: install                 ## retrain the shipped models (default profile and seed) from an empty cache: after changing the code behind a recipe
	$(OFFLINE) $(BIN)/python -m scripts.ship_models

clean-notebooks:                ## strip outputs and execution counts from every notebook
	$(BIN)/python -m scripts.clean_notebooks notebooks/*.ipynb

student: install                ## student copies of every notebook in student/ (solutions replaced by stubs)
	$(BIN)/python -m scripts.student_copies

assignments: install grade-tools ## the lessons as nbgrader assignments in grading/release/ (the same stubs as make student)
	$(BIN)/python -m scripts.assignments release

# every notebook executed (quick profile, seed 0) and rendered with the guides: 13 minutes on 2 cores
# with warm caches, two notebooks at once (each torch on one thread, as in make test)
SITE_JOBS ?= 2
site: install                   ## the executed course as static HTML in site/, and each lesson's figures as PNG files
	$(OFFLINE) $(QUIET) OMP_NUM_THREADS=$(if $(filter 1,$(SITE_JOBS)),2,1) $(BIN)/python -m scripts.build_site --jobs $(SITE_JOBS)
