# Shortcuts; the scripts are the real commands.
.PHONY: run test lint fmt venv procfile compose-check

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

# Regenerate the checked-in Procfile (the shape run.sh starts with the default settings).
procfile:
	env -u REDIS_URL -u MOC_DEVICE_QUEUES -u MOC_VAR_DIR -u MOC_WEB_PORT -u MOC_WS_PORT \
	  -u MOC_DEVICE_WORKER_THREADS -u MOC_START_REDIS ./scripts/run.sh --procfile > Procfile

compose-check:
	docker-compose -f compose.yaml config -q
