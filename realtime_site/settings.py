"""Settings, read from the environment in one place.

Every tunable has a name with its unit and a documented default (README's
configuration table). With no environment at all the site runs embedded:
SQLite, in-memory channel layer, the local fakeai demo model.
"""

import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)


def _local_secret_key() -> str:
    """A per-checkout random key, so a laptop run never uses a published one."""
    path = BASE_DIR / ".secret_key"
    if not path.exists():
        draft = path.with_name(f".secret_key.{os.getpid()}")
        draft.write_text(secrets.token_urlsafe(50))
        draft.chmod(0o600)
        try:
            os.link(draft, path)  # atomic: the first process to start wins
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


# Multi-instance deployments must set SECRET_KEY: every process needs the same one.
SECRET_KEY = env.str("SECRET_KEY", default="") or _local_secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=False)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "realtime",
    "accounts",
    "chat",
    "rooms",
    "voice",
]

MIDDLEWARE = [
    # First: it turns every other layer's error pages under /api/ into JSON.
    "realtime.api_errors.JsonApiErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.auth.BearerTokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "realtime_site.urls"
ASGI_APPLICATION = "realtime_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "realtime.context_processors.site",
            ],
        },
    },
]

# --- Database: SQLite file by default, DATABASE_URL for PostgreSQL -----------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Replies persist from worker threads; reuse their connections instead of
# opening one per write (PostgreSQL).
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE_SECONDS", default=60)
# No health checks: channels closes unusable connections after a failed call,
# and a check per call doubled the round trips to PostgreSQL under load.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions: many replies persist while others read.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Threads for the database work of sockets and runs (realtime.db). SQLite
# takes one writer at a time, and contending writers back off in sleeps of up
# to 100 ms: one thread there; PostgreSQL overlaps several.
DB_THREADS = env.int(
    "DB_THREADS",
    default=1 if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" else 8,
)

# --- Channel layer and shared state: in memory by default, REDIS_URL for Redis
REDIS_URL = env.str("REDIS_URL", default="")
# Streams and rate limits (realtime.redis_clients): connections per pool,
# per event loop of a process (one pool for commands, one for blocking reads). A
# command finding them all busy waits up to REDIS_POOL_TIMEOUT_SECONDS for one.
REDIS_MAX_CONNECTIONS = env.int("REDIS_MAX_CONNECTIONS", default=50)
REDIS_POOL_TIMEOUT_SECONDS = env.float("REDIS_POOL_TIMEOUT_SECONDS", default=10.0)
# The channel layer's pool (per event loop): channels_redis 4.3 builds a plain,
# non-blocking redis-py pool from the host dict, so past this many commands in flight
# a send or receive raises MaxConnectionsError instead of waiting. redis-py's default
# is 100; connections open only on demand: a ceiling for bursts, not a reservation.
REDIS_CHANNEL_LAYER_MAX_CONNECTIONS = env.int("REDIS_CHANNEL_LAYER_MAX_CONNECTIONS", default=500)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 defaults socket_timeout to 5 s, shorter than the
                # layer's blocking pop: idle consumers would die every 5 s.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "max_connections": REDIS_CHANNEL_LAYER_MAX_CONNECTIONS,
                    }
                ],
                "capacity": env.int("CHANNEL_CAPACITY", default=1000),
                "expiry": 60,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Auth -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Under /api/ a CSRF failure is a JSON error saying why; pages keep Django's.
CSRF_FAILURE_VIEW = "realtime.api_errors.csrf_failure"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files: served by whitenoise in every mode ---------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# --- The model ------------------------------------------------------------------
# With no OPENAI_API_KEY the site talks to the local fakeai server ("demo model").
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
DEMO_MODE = not OPENAI_API_KEY
FAKEAI_URL = env.str("FAKEAI_URL", default="http://127.0.0.1:8001/v1")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="" if OPENAI_API_KEY else FAKEAI_URL)
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4o-mini" if OPENAI_API_KEY else "fakeai")
LLM_TIMEOUT_SECONDS = env.float("LLM_TIMEOUT_SECONDS", default=30.0)
LLM_CONNECT_TIMEOUT_SECONDS = env.float("LLM_CONNECT_TIMEOUT_SECONDS", default=5.0)
LLM_MAX_CONNECTIONS = env.int("LLM_MAX_CONNECTIONS", default=1000)
LLM_MAX_RETRIES = env.int("LLM_MAX_RETRIES", default=2)
LLM_RETRY_BASE_SECONDS = env.float("LLM_RETRY_BASE_SECONDS", default=0.5)
LLM_RETRY_MAX_WAIT_SECONDS = env.float("LLM_RETRY_MAX_WAIT_SECONDS", default=10.0)
LLM_MAX_OUTPUT_TOKENS = env.int("LLM_MAX_OUTPUT_TOKENS", default=1024)
# Older OpenAI-compatible servers only know "max_tokens".
LLM_MAX_TOKENS_PARAM = env.str("LLM_MAX_TOKENS_PARAM", default="max_completion_tokens")
LLM_CONTEXT_BUDGET_TOKENS = env.int("LLM_CONTEXT_BUDGET_TOKENS", default=6000)
LLM_SYSTEM_PROMPT = env.str(
    "LLM_SYSTEM_PROMPT",
    default="You are a helpful assistant. Answer clearly; use Markdown for code and lists.",
)

# --- Sockets, runs and streams (realtime/) -----------------------------------------
WS_MAX_FRAME_BYTES = env.int("WS_MAX_FRAME_BYTES", default=65536)
# A socket sending more frames than this in 10 s is closed with 4429 (0 disables).
WS_MAX_FRAMES_PER_10S = env.int("WS_MAX_FRAMES_PER_10S", default=60)
# A run nobody reads is stopped after this long.
RUN_ORPHAN_GRACE_SECONDS = env.float("RUN_ORPHAN_GRACE_SECONDS", default=30.0)
# Longest wait for a finished run's final save before its terminal event goes out anyway.
RUN_SAVE_TIMEOUT_SECONDS = env.float("RUN_SAVE_TIMEOUT_SECONDS", default=30.0)
# Empty: Redis streams when REDIS_URL is set, else in-process ones.
STREAMS_BACKEND = env.str("STREAMS_BACKEND", default="")
# A finished stream stays in process memory this long, then resumes read Redis or the database.
STREAM_RETAIN_SECONDS = env.float("STREAM_RETAIN_SECONDS", default=10.0)
# How long a finished stream stays in Redis.
STREAM_TTL_SECONDS = env.int("STREAM_TTL_SECONDS", default=600)
# Batching window for writing stream events to Redis.
STREAM_FLUSH_MS = env.int("STREAM_FLUSH_MS", default=15)
# A reader waiting this long with no event re-checks that the producer is alive.
STREAM_READER_IDLE_SECONDS = env.float("STREAM_READER_IDLE_SECONDS", default=15.0)

# --- Chat ---------------------------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=8000)
CHAT_RATE_LIMIT_PER_MINUTE = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=30)
REPLY_PERSIST_INTERVAL_MS = env.int("REPLY_PERSIST_INTERVAL_MS", default=500)

# --- Logging: one structured line per event, no message content at INFO --------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
