# Everything a fresh machine needs: Python 3.11+; the project and its pinned packages are installed into .venv here.
PYTHON ?= python3
VENV := .venv
READY := $(VENV)/.ready
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: demo test synth bench clean

$(READY): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[dev,cdk,lambda]' -c requirements.txt
	# The development install puts the repository on the venv's path: the demo (sandbox/, found through its entry
	# point), the stacks and the tests are the repository's, never the wheel's.
	$(VENV)/bin/python -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_paths()["purelib"], "neptune_guard_repository.pth").write_text("$(CURDIR)\n")'
	touch $(READY)

demo: $(READY)
	$(VENV)/bin/neptune-guard demo

# node_modules: the guardrails' tests run the pinned cfn-guard binary (package.json).
test: $(READY) node_modules/.package-lock.json
	$(VENV)/bin/python -m pytest -q -n auto

node_modules/.package-lock.json: package.json package-lock.json .npmrc
	npm ci --no-audit --no-fund

# The pinned CDK CLI (package.json), offline, with the venv's Python running app.py.
synth: $(READY) node_modules/.package-lock.json
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" npx --no-install cdk synth --quiet

bench: $(READY)
	$(VENV)/bin/python benchmarks/scan_benchmark.py

clean:
	rm -rf $(VENV) cdk.out .pytest_cache
