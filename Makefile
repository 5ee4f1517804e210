# Convenience targets; the README's two commands do the same without needing make.
.PHONY: setup run test lint bench images compile

setup:
	bash scripts/setup.sh

run: setup
	.venv/bin/drsynth run --preset quick

test: setup
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check .

compile: setup
	.venv/bin/drsynth pipeline compile

# Container images (Docker with BuildKit): drsynth-{render,train,serve}:<version>, see images/Makefile.
images:
	$(MAKE) -f images/Makefile all
