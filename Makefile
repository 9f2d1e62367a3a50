# Two commands on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
FAKEAI_PORT ?= 8001
# The multi-instance services every machine runs (CI included).
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/test
REDIS_TEST_URL ?= redis://127.0.0.1:6379/14
CHROMIUM ?= /usr/bin/chromium
# Processes sharing Redis need one SECRET_KEY; this one is for tests only.
TEST_SECRET_KEY ?= test-only-secret-key-of-the-services-pass-never-used-in-production
# The production profile of docs/deploy.md (its SECRET_KEY is made up per run).
PRODUCTION_ENV := DEBUG=false ALLOWED_HOSTS=chat.example.com \
	CSRF_TRUSTED_ORIGINS=https://chat.example.com BEHIND_TLS_PROXY=true \
	DATABASE_URL=postgres://app@db:5432/realtime REDIS_URL=redis://redis:6379/0

.PHONY: install lock run test lint format migrate chromium speech check-deploy bench bench-vad bench-echo bench-voice clean

# Installs exactly the locked versions, each checked against its hash. The packages
# of the *-nodeps locks come without their declared dependencies (silero-vad's model
# files without the torch it names; Smart Turn's, for a benchmark, without pipecat's).
$(VENV)/.installed: requirements.lock requirements-dev.lock requirements-nodeps.lock \
		requirements-dev-nodeps.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --require-hashes -r requirements-dev.lock
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements-nodeps.lock \
	  -r requirements-dev-nodeps.lock
	touch $@

install: $(VENV)/.installed

# Rewrites the locks from requirements.txt, requirements-dev.txt and the two
# *-nodeps.txt (the files people edit): run it after changing a pin there, or
# after merging branches that did. Unchanged packages keep their locked versions; LOCK_FLAGS=--upgrade moves
# every unpinned dependency to its newest release. The application lock also
# constrains the dev lock, so both install the same versions.
LOCK_FLAGS ?=
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--custom-compile-command "make lock" $(LOCK_FLAGS)
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q "$$(grep -E '^uv==' requirements-dev.txt)"
	$(UV_COMPILE) requirements.txt -o requirements.lock
	$(UV_COMPILE) requirements-dev.txt -c requirements.lock -o requirements-dev.lock
	$(UV_COMPILE) --no-deps requirements-nodeps.txt -o requirements-nodeps.lock
	$(UV_COMPILE) --no-deps requirements-dev-nodeps.txt -o requirements-dev-nodeps.lock

migrate: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v 0

# Starts fakeai (the demo model) when OPENAI_API_KEY is unset, then daphne.
# Ctrl-C stops both.
# A busy port stops it before anything starts, with one line saying which variable to change.
run: migrate
	@ports="PORT=$(HOST):$(PORT)"; \
	[ -n "$$OPENAI_API_KEY" ] || ports="$$ports FAKEAI_PORT=127.0.0.1:$(FAKEAI_PORT)"; \
	$(PY) manage.py check_ports $$ports || exit 1; \
	$(PY) manage.py ensure_admin; \
	pids=""; \
	trap 'kill $$pids 2>/dev/null; wait 2>/dev/null' EXIT INT TERM; \
	if [ -z "$$OPENAI_API_KEY" ]; then \
	  export FAKEAI_URL=http://127.0.0.1:$(FAKEAI_PORT)/v1; \
	  $(PY) -m fakeai --host 127.0.0.1 --port $(FAKEAI_PORT) & pids="$$!"; \
	  echo "No OPENAI_API_KEY: answering with the demo model (fakeai on port $(FAKEAI_PORT))"; \
	fi; \
	echo ""; \
	echo "  Open http://$(HOST):$(PORT)/"; \
	echo ""; \
	$(PY) -m daphne -b $(HOST) -p $(PORT) realtime_site.asgi:application

# Debian's Chromium for the browser tests (never a downloaded browser).
chromium:
	@test -x $(CHROMIUM) || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

# Debian's espeak-ng (speech for the VAD tests and benchmark) and sox.
speech:
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng sox; }

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Django's deployment checklist under the production profile: no warning passes.
check-deploy: install
	$(PRODUCTION_ENV) SECRET_KEY="$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  $(PY) manage.py check --deploy --fail-level WARNING

# The whole suite in the embedded mode and, beside it, the `services` tests again
# against PostgreSQL + Redis (slot 1: Redis databases and PostgreSQL names of
# its own; its output follows the embedded pass's). Both passes must pass.
SERVICES_LOG := .pytest-services.log
test: install chromium speech lint check-deploy
	@SECRET_KEY=$(TEST_SECRET_KEY) DATABASE_URL=$(PG_TEST_URL) REDIS_URL=$(REDIS_TEST_URL) \
	  TEST_SERVICES_SLOT=1 $(PY) -m pytest -m services -p no:cacheprovider \
	  >$(SERVICES_LOG) 2>&1 & services=$$!; \
	trap 'kill $$services 2>/dev/null' INT TERM; \
	$(PY) -m pytest; embedded=$$?; \
	wait $$services; services_status=$$?; \
	echo ""; echo "=== the services tests on PostgreSQL + Redis ==="; cat $(SERVICES_LOG); \
	test $$embedded -eq 0 -a $$services_status -eq 0

bench: install
	$(PY) -m bench.chat_load

bench-vad: install speech
	$(PY) -m bench.vad_bench

# The echo gate; the echo cancellers it is compared with are rows only where their
# (optional, uninstalled) packages import.
bench-echo: install speech
	$(PY) -m bench.echo_bench

bench-voice: install speech
	$(PY) -m bench.voice_latency

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles .pytest_cache .ruff_cache $(SERVICES_LOG)
