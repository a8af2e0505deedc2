# zookeeper: the lab's one-command entry points.  `make help` lists them.
#
# Every Python this Makefile runs is the project's venv, $(VENV): `make setup` (which
# demo, rootfs and the test targets run first) makes it and installs what is missing.
# The variables and the set-up, rootfs, demo and diff targets are the student's Makefile's
# too: tools/common.mk.
include tools/common.mk
.DEFAULT_GOAL := help

.PHONY: help parts skeleton generate-check test test-deps test-quick lint vm vm-info \
        test-vm test-venv grade bench bench-quick stability mutants handout clean

help:
	@echo "make demo           set up (packages, venv, rootfs) and run a container that shows its isolation"
	@echo "make setup          install what is missing: Debian packages (sudo apt-get), the venv $(VENV)"
	@echo "make check-deps     only say what is missing, install nothing"
	@echo "make rootfs         build $(BUILD)/zoo-fs.tar and unpack it into $(ROOTFS) (as you), if absent"
	@echo "make rootfs-reset   unpack $(ROOTFS) afresh: your changes in it are lost"
	@echo "make rootfs-debian  a Debian minbase rootfs (needs root or mmdebstrap) in $(BUILD)/zoo-fs-debian"
	@echo "make rootfs-debian-reset  unpack $(BUILD)/zoo-fs-debian afresh"
	@echo "make test           install the test dependencies (root) and run every test, VM included"
	@echo "make test-deps      only install the test dependencies (root): packages, zootest, venvs"
	@echo "make test-quick     the tests that need no VM;  make test-vm: only those that do"
	@echo "make test-arm64     grade the references in an arm64 guest (x86_64: ~7 min, ~3 once built)"
	@echo "make lint           ruff and vermin (Python 3.10);  make generate-check: are the parts and skeleton up to date?"
	@echo "make test-venv      pytest and ruff into the venv (no root; test-deps does it too)"
	@echo "make parts          write part1..part6 from src/;  make skeleton: write skeleton/"
	@echo "make diff PART=N    stage N's lesson: part N-1 against part N (PART=6 if not given)"
	@echo "make vm             build (or reuse) the grader's VM image;  make vm-info: where it is"
	@echo "make grade SUB=DIR  grade a submission in the VM"
	@echo "make bench          benchmarks (as root: everything; build/bench.json); make bench-quick: CI's"
	@echo "make stability      grade the references RUNS=10 times (JOBS=1 or 2 VMs at once): scores, each check's time and headroom"
	@echo "make mutants        grade the mutation suite's mistakes in the VM (README 9.3); report in $(BUILD)/mutants"
	@echo "make handout        the student tree in $(BUILD)/handout"
	@echo "make gradescope     Gradescope's autograder: $(BUILD)/autograder.zip (VM_IMAGE=, VM_SHA256=: an image to import)"
	@echo "make clean          remove $(BUILD) (the rootfs too; the venv stays)"

parts: | setup
	$(PYTHON) tools/generate.py --only parts

skeleton: | setup
	$(PYTHON) tools/generate.py --only skeleton

generate-check: | setup
	$(PYTHON) tools/generate.py --check

# Root's part (packages, the test user zootest, /opt/zookeeper-venv for that user),
# then pytest and ruff in our venv.
test-deps:
	sh tools/setup-test-env.sh
	@$(SETUP) test

# pytest and ruff in the venv, for the targets that run them without test-deps: as
# you, no root (the `test` need's useradd and setpriv are test-deps's, root's).
test-venv:
	@$(SETUP) lint

# ruff, then vermin: the oldest Python the README promises (3.10) has every module,
# function and argument the code uses, checked here where only 3.11 is installed.
lint: | test-venv
	$(PYTHON) -m ruff check .
	$(dir $(PYTHON))vermin --quiet --no-tips --violations --eval-annotations -t=3.10- \
		src grader tools tests bench

# The arm64 guest too (tests/test_vm_arm64.py: its image from scratch and all six
# parts, ~7 minutes on 2 cores), and the image built by a new user without root
# (tests/test_vm_image.py, ~2 minutes).
test: test-deps lint generate-check
	ZOO_TEST_ARM64=1 ZOO_TEST_ROOTLESS_BUILD=1 $(PYTHON) -m pytest -q -p no:cacheprovider

test-quick: lint generate-check
	$(PYTHON) -m pytest -q -p no:cacheprovider -m "not vm and not slow"

test-vm: | test-venv
	$(PYTHON) -m pytest -q -p no:cacheprovider -m vm

# The arm64 grader VM (issue 14): every part of the references graded in an arm64
# guest (tests/test_vm_arm64.py, which the other targets skip); on x86_64 under TCG,
# and building the image there needs qemu-user-static and binfmt-support.
.PHONY: test-arm64
test-arm64: | test-venv
	ZOO_TEST_ARM64=1 $(PYTHON) -m pytest -q -p no:cacheprovider tests/test_vm_arm64.py

vm: | setup
	$(PYTHON) grader/vm.py build
	$(PYTHON) grader/vm.py save

vm-info: | setup
	$(PYTHON) grader/vm.py info

grade: | setup
	@test -n "$(SUB)" || { echo "make grade SUB=DIR"; exit 2; }
	$(PYTHON) grader/grade $(SUB)

bench: | setup
	$(PYTHON) bench/run.py

bench-quick: | setup
	$(PYTHON) bench/run.py --quick

stability: | setup
	$(PYTHON) bench/stability.py --runs $(or $(RUNS),10) --jobs $(or $(JOBS),1) --out $(BUILD)/stability

mutants: | setup
	$(PYTHON) tools/mutate.py run --out $(BUILD)/mutants --jobs $(or $(JOBS),1)

handout: | setup
	$(PYTHON) tools/handout.py $(BUILD)/handout

# Gradescope's autograder: setup.sh, run_autograder and the grader in one zip (see
# grader/gradescope/).  With an image exported by grader/vm.py export, setup.sh imports it
# instead of building one: make gradescope VM_IMAGE=URL-or-FILE VM_SHA256=HASH
.PHONY: gradescope
gradescope: | setup
	$(PYTHON) grader/gradescope/bundle.py $(BUILD)/autograder.zip \
	    $(if $(VM_IMAGE),--vm-image $(VM_IMAGE) --vm-sha256 $(VM_SHA256))

clean:
	rm -rf $(BUILD)
