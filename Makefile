# The two commands of the README:  `make run`  and  `make test`  (each sets up .venv first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-fast bench clean

$(BIN)/yt8m: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/yt8m

setup: $(BIN)/yt8m

# The main job: the whole pipeline locally (kfp.local) on a generated YT8M-format dataset.
run: setup
	$(BIN)/yt8m run --local

# Every test, the slow end-to-end ones included (what CI runs). Two pytest-xdist workers, one test file
# per worker at a time (--dist loadfile keeps a file's module fixtures in one process).
PYTEST_PARALLEL := -n 2 --dist loadfile
# The tests' temporary files (pytest's tmp_path, whatever a library leaves in TMPDIR) go to .tmp/ in this
# checkout, emptied at the start of each run, never piling up in the machine's /tmp.
TEST_TMP := $(CURDIR)/.tmp

test: setup
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) --durations=20

# The fast tests only, for a developer loop.
test-fast: setup
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) $(BIN)/python -m pytest -q $(PYTEST_PARALLEL) -m "not slow"

bench: setup
	$(BIN)/python benchmarks/bench_reader.py
	$(BIN)/python benchmarks/bench_gap.py

clean:
	rm -rf $(VENV) runs *.egg-info $(TEST_TMP)
