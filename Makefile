# The two commands of the README do all set-up on a fresh machine:
#   make demo   render the demo shots (creates .venv, installs pinned deps, makes demo plates, runs the workflow)
#   make test   run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo demo-diffusion test lint bench clean

venv: $(STAMP)

$(STAMP): requirements-torch.txt requirements.txt requirements-deepspeed.txt requirements-perception.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-torch.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-build-isolation -r requirements-deepspeed.txt
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -r requirements-perception.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: venv
	$(BIN)/cinecomp demo --out demo
	$(BIN)/cinecomp render

# The demo shots through the diffusion backend with the shipped proof model (models/proof, MODEL_CARD.md:
# a tiny CPU-trained model applied as light layers on the over comp): prompt rule, DeepSpeed launcher, windows.
demo-diffusion: venv
	@echo "demo-diffusion shows the plumbing (prompt rule, DeepSpeed ranks, windows, checkpoints): the proof model"
	@echo "is worse than plain over on unseen shots; read models/proof/MODEL_CARD.md before judging any picture."
	test -d demo || $(BIN)/cinecomp demo --out demo
	$(BIN)/cinecomp render -- --configfile config.yaml models/proof/cinecomp.yaml --config results=results-diffusion

# The SLURM story (marker slurm) mostly waits on the scheduler, so it runs beside the other tests;
# its report comes first, theirs last. The exit status is the worse of the two. The story's own CPU
# burners are off here: the other tests beside it keep both cores busy (run `pytest -m slurm` alone for them).
# The other tests run on TEST_WORKERS pytest-xdist workers (one core each, at most 4), one test file per
# worker so that a file's module fixtures are made once (tests/conftest.py: files sharing a session
# fixture go to one worker, the longest are handed out first).
TEST_WORKERS ?= $(shell n=$$(nproc); [ $$n -gt 4 ] && n=4; echo $$n)
test: venv
	@rm -f .pytest-slurm.log; \
	CINECOMP_TEST_BURN_CORES=0 $(BIN)/python -m pytest -q -ra -m slurm > .pytest-slurm.log 2>&1 & slurm=$$!; \
	$(BIN)/python -m pytest -q -ra -m "not slurm" -n $(TEST_WORKERS) --dist loadfile > .pytest-rest.log 2>&1; rest=$$?; \
	wait $$slurm; sl=$$?; \
	echo "--- SLURM tests (marker slurm), run beside the others:"; cat .pytest-slurm.log; \
	echo "--- all other tests:"; cat .pytest-rest.log; \
	if [ $$rest -ne 0 ]; then exit $$rest; fi; if [ $$sl -ne 0 ] && [ $$sl -ne 5 ]; then exit $$sl; fi

lint: venv
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check Snakefile rules

bench: venv
	$(BIN)/python bench/exr_io.py
	$(BIN)/python bench/keyer.py
	$(BIN)/python bench/harmonize.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/diffusion.py --json
	$(BIN)/python bench/perception.py
	$(BIN)/python bench/curation.py

clean:
	rm -rf results results-diffusion models/tiny logs benchmarks demo .snakemake report.html
