# Shortcuts; the scripts are the real commands.
.PHONY: run test lint fmt venv compose-check

run:
	./scripts/run.sh

# make test ARGS="tests/fleet -k placement"
test:
	./scripts/test.sh $(ARGS)

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

fmt: venv
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

venv:
	@bash -c 'source scripts/lib.sh && ensure_venv test'

compose-check:
	docker-compose -f compose.yaml config -q
