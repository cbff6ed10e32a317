# The README's commands. `make run` starts the system, `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: run test install install-run lint typecheck protos protos-check monitoring lock \
	lock-hashes bench soak fuzz train export evaluate quantize cross-validate clean

# The labelled photos the bundled model is trained and evaluated on.
DATA ?= ../shared/datasets/clothing-small

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip

# Every extra, for development and tests: each dependency checked against its hash in
# the lock, then the project itself, editable and without dependencies (pip refuses
# editable installs in hash-checking mode). TensorFlow (the convert extra) goes in
# again last, on its own: tensorflow-protobuf (dev) ships a stand-in
# tensorflow/__init__.py and a few of TensorFlow's own proto modules, and TensorFlow's
# files must be the ones that stay.
$(VENV)/.installed-all: $(BIN)/python pyproject.toml $(LOCK)
	$(PIP) --require-hashes -r $(LOCK)
	awk '/^tensorflow[-_]cpu==/ {keep=1} keep {print} keep && !/\\$$/ {exit}' $(LOCK) \
		> $(VENV)/tensorflow.txt
	$(PIP) --require-hashes --no-deps --force-reinstall -r $(VENV)/tensorflow.txt
	$(PIP) --no-deps -e .
	touch $@

# Only what running the system needs (no torch, no test tools): the lock's share for
# the server, gateway and client extras (requirements/run.txt), by hash.
$(VENV)/.installed-run: $(BIN)/python pyproject.toml requirements/run.txt
	$(PIP) --require-hashes -r requirements/run.txt
	$(PIP) --no-deps -e .
	touch $@

install: $(VENV)/.installed-all
install-run: $(VENV)/.installed-run

run: install-run
	$(BIN)/clothing up

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

protos: install
	$(BIN)/python scripts/gen_protos.py

protos-check: install
	$(BIN)/python scripts/gen_protos.py --check

# The monitoring component's copies of deploy/observability's rules and dashboard.
monitoring: install
	$(BIN)/python scripts/gen_monitoring.py

# Tests find the photos through CLOTHING_DATA (same default when pytest runs alone).
test: lint typecheck protos-check
	CLOTHING_DATA=$(DATA) $(BIN)/pytest

# The full benchmark: every system side by side on loopback. BENCH_ARGS passes options,
# e.g. the documented run: make bench BENCH_ARGS="--concurrency 1,4,8,16,32,64 --duration 9 --rounds 2"
BENCH_ARGS ?=
bench: install
	$(BIN)/clothing bench $(BENCH_ARGS)

# Five minutes at concurrency 16 through gateway + model server: zero failures,
# flat memory, file descriptors and threads.
soak: install
	$(BIN)/python scripts/soak.py --duration 300

# Coverage-guided fuzzing of image decoding and tensor intake (a minute each).
fuzz: install
	$(BIN)/python fuzz/make_corpus.py
	$(BIN)/python fuzz/fuzz_images.py fuzz/corpus/images -max_total_time=60 -rss_limit_mb=2048
	$(BIN)/python fuzz/fuzz_tensors.py fuzz/corpus/tensors -max_total_time=60 -rss_limit_mb=2048

# Reproduce the bundled model: train two runs of one recipe that differ only in their seed,
# export the mean of their weights as version $(MODEL_VERSION), evaluate it on the validation
# split. Each run takes about 65 minutes on 2 idle cores (3 minutes for the activation cache
# and the classifier's warm start, then 12 epochs of end-to-end fine-tuning of about 5
# minutes each). A run saves its whole state after every epoch: run `make train` again after
# an interruption and it carries on where it stopped.
MODEL_VERSION ?= 3
SEEDS ?= 1234 7
RUN_PREFIX ?= runs/clothing-lite1-seed
# The bundled model's recipe, less its seed and where it writes.
RECIPE ?= recipes/clothing-v3.toml

train: install
	for seed in $(SEEDS); do \
		run=$(RUN_PREFIX)$$seed; \
		if [ -f $$run/resume.pt ]; then \
			$(BIN)/clothing train --resume $$run --data $(DATA) || exit 1; \
		else \
			$(BIN)/clothing train --data $(DATA) --output $$run --recipe $(RECIPE) \
				--seed $$seed --cache-dir runs/cache || exit 1; \
		fi; \
	done

# The accuracy to expect on new photos: 5-fold cross-validation of the recipe (one run, the
# first seed, its last epoch kept) over every labelled photo. Each fold trains on 4/5 of the
# photos, is exported and scored on the fifth, which took part in no choice; its answers are
# saved to $(CV_RESULTS)/fold-N.json. A fold takes about an hour on 2 idle cores; run it
# again after an interruption and it resumes the unfinished fold and skips finished ones.
FOLDS := 5
CV_RESULTS ?= evaluation/cross-validation/lite1-240-272
CV_RUNS ?= runs/cv
cross-validate: install
	for fold in $$(seq $(FOLDS)); do \
		run=$(CV_RUNS)/fold-$$fold; result=$(CV_RESULTS)/fold-$$fold.json; \
		[ -f $$result ] && continue; \
		if [ -f $$run/resume.pt ]; then \
			$(BIN)/clothing train --resume $$run --data $(DATA) || exit 1; \
		else \
			$(BIN)/clothing train --data $(DATA) --output $$run --recipe $(RECIPE) \
				--seed $(firstword $(SEEDS)) --folds $(FOLDS) --fold $$fold || exit 1; \
		fi; \
		$(BIN)/clothing export --checkpoint $$run/checkpoint.pt --model-dir $$run/model \
			--version 1 --overwrite --no-flip-average || exit 1; \
		$(BIN)/clothing evaluate --model $$run/model --data $(DATA) --folds $(FOLDS) \
			--fold $$fold --fold-output $$result || exit 1; \
	done
	$(BIN)/clothing evaluate --cross-validation $(CV_RESULTS)

export: install
	$(BIN)/clothing export \
		--checkpoint $(foreach seed,$(SEEDS),$(RUN_PREFIX)$(seed)/checkpoint.pt) \
		--model-dir models/clothing-model --version $(MODEL_VERSION) --overwrite \
		--no-flip-average --check-data $(DATA)/validation

# The confusion matrix the model card shows is kept beside the model; export replaces
# the version folder whole, so it is copied back here.
evaluate: install
	$(BIN)/clothing evaluate --data $(DATA) --model models/clothing-model \
		--output runs/eval --latency --update-metadata
	cp runs/eval/confusion_matrix.png models/clothing-model/$(MODEL_VERSION)/
	$(BIN)/clothing evaluate --cross-validation $(CV_RESULTS)

# The int8 copy for CPUs (what `make run` serves), written only if accuracy holds.
quantize: install
	$(BIN)/clothing quantize --model models/clothing-model --data $(DATA) \
		--output models/clothing-model-int8

# Re-pin every dependency of every extra (needs the package registries): a fresh
# virtualenv with every extra, frozen (setuptools and wheel included: packages need
# them at run time), then scripts/lock.py gives each pin the hashes of all its files
# and writes each install's share (requirements/server.txt, gateway.txt, run.txt).
# `make lock-hashes` does the second half alone, keeping every version as it is.
lock: install
	work=$$(mktemp -d) && \
	$(PYTHON) -m venv $$work/venv && \
	$$work/venv/bin/python -m pip install -q -e '.[server,gateway,client,train,dev]' && \
	$$work/venv/bin/python -m pip install -q -e '.[convert]' && \
	$$work/venv/bin/python -m pip freeze --all --exclude-editable --exclude pip \
		| grep -v '^-e' > $$work/pins.txt && \
	$(BIN)/python scripts/lock.py --pins $$work/pins.txt; \
	status=$$?; rm -rf $$work; exit $$status

lock-hashes: install
	$(BIN)/python scripts/lock.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
