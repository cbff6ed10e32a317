# The README's commands. `make run` starts the system, `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c $(LOCK)

.PHONY: run test install install-run lint typecheck protos protos-check monitoring lock bench soak fuzz \
	train export evaluate quantize clean

# The labelled photos the bundled model is trained and evaluated on.
DATA ?= ../shared/datasets/clothing-small

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip

# Every extra, for development and tests. The convert extra goes in last, on its own:
# tensorflow-protobuf (dev) ships a stand-in tensorflow/__init__.py and a few of
# TensorFlow's own proto modules, and TensorFlow's files must be the ones that stay.
$(VENV)/.installed-all: $(BIN)/python pyproject.toml $(LOCK)
	$(PIP) -e '.[server,gateway,client,train,dev]'
	$(PIP) -e '.[convert]'
	touch $@

# Only what running the system needs (no torch, no test tools).
$(VENV)/.installed-run: $(BIN)/python pyproject.toml $(LOCK)
	$(PIP) -e '.[server,gateway,client]'
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

train: install
	for seed in $(SEEDS); do \
		run=$(RUN_PREFIX)$$seed; \
		if [ -f $$run/resume.pt ]; then \
			$(BIN)/clothing train --resume $$run --data $(DATA) || exit 1; \
		else \
			$(BIN)/clothing train --data $(DATA) --output $$run \
				--arch lite1 --image-size 240 --serve-image-size 272 --head-epochs 30 \
				--epochs 0 --full-epochs 12 --full-learning-rate 3e-4 --frozen-blocks 0 \
				--trainable-blocks 4 --batch-size 32 --ema-decay 0.998 --balanced-loss \
				--seed $$seed --cache-dir runs/cache || exit 1; \
		fi; \
	done

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

# The int8 copy for CPUs (what `make run` serves), written only if accuracy holds.
quantize: install
	$(BIN)/clothing quantize --model models/clothing-model --data $(DATA) \
		--output models/clothing-model-int8

# Re-pin every dependency of every extra (needs the package registries): a fresh
# virtualenv with every extra, frozen: the exact set CI and images install.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q -e '.[server,gateway,client,train,dev]'
	.lock-venv/bin/python -m pip install -q -e '.[convert]'
	.lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
