"""Settings, read from the environment in one place.

Every tunable has a name with its unit and a documented default (README's
configuration table). With no environment at all the site runs embedded:
SQLite, in-memory channel layer, the local fakeai demo model.
"""

import logging
import os
import secrets
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

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


# Shared state (channel layer, streams, rate limits) lives in Redis when set.
REDIS_URL = env.str("REDIS_URL", default="")

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if REDIS_URL:
        # With Redis, several processes serve one site, and each would make up its
        # own key: sessions and CSRF tokens would work on one process only.
        raise ImproperlyConfigured(
            "REDIS_URL is set, so this is a multi-instance deployment: set SECRET_KEY, "
            "the same on every process (for instance the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    SECRET_KEY = _local_secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- TLS: the production profile is BEHIND_TLS_PROXY=true (docs/deploy.md) --------
# Trust the proxy's X-Forwarded-Proto, then by default: redirect http to https,
# send HSTS, and keep the session and CSRF cookies to https.
BEHIND_TLS_PROXY = env.bool("BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=BEHIND_TLS_PROXY)
SECURE_SSL_REDIRECT = env.bool("SSL_REDIRECT", default=BEHIND_TLS_PROXY)
# Load balancers probe the processes directly, over plain http.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("HSTS_SECONDS", default=31_536_000 if BEHIND_TLS_PROXY else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("HSTS_INCLUDE_SUBDOMAINS", default=True)
# Preloading is the domain owner's decision (browsers ship it; slow to undo): opt in.
SECURE_HSTS_PRELOAD = env.bool("HSTS_PRELOAD", default=False)
if not SECURE_HSTS_PRELOAD:
    SILENCED_SYSTEM_CHECKS = ["security.W021"]  # "HSTS_PRELOAD is not set"

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
    "csp",
    "realtime",
    "accounts",
    "chat",
    "rooms",
    "voice",
]

MIDDLEWARE = [
    # First: every response, even one a later middleware makes, gets a request id.
    "realtime.log_context.RequestIdMiddleware",
    # Next: it turns every other layer's error pages under /api/ into JSON.
    "realtime.api_errors.JsonApiErrorsMiddleware",
    "realtime.db.ReleaseConnectionsWhileStreaming",
    "django.middleware.security.SecurityMiddleware",
    "realtime.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "accounts.auth.BearerTokenMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# --- Security headers ------------------------------------------------------------
# No inline script or style anywhere (JSON data travels in json_script blocks,
# which are not executed); the pages' own WebSocket is added per request.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True

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
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# Threads for the database work of sockets and runs (realtime.db). SQLite takes
# one writer at a time, and contending writers back off in sleeps of up to
# 100 ms: one thread there; PostgreSQL overlaps several.
DB_THREADS = env.int("DB_THREADS", default=1 if _SQLITE else 8)
# Under ASGI, Django's advice: no persistent connection per thread (requests
# run on short-lived threads); every call returns its connection at its end.
DATABASES["default"]["CONN_MAX_AGE"] = 0
if _SQLITE:
    # WAL + IMMEDIATE transactions: many replies persist while others read.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    # PostgreSQL: psycopg's pool keeps connections open between calls, per process.
    # Kept open from the start for the database threads: a burst of messages
    # must not wait for the pool to grow one new connection at a time.
    _pool_max_size = env.int("DB_POOL_MAX_SIZE", default=DB_THREADS + 8)
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(DB_THREADS, _pool_max_size),
        "max_size": _pool_max_size,
        "timeout": env.float("DB_POOL_TIMEOUT_SECONDS", default=10.0),
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Channel layer and shared state: in memory by default, REDIS_URL for Redis
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
            # channels_redis's core layer, whose process-local receives a closing
            # socket cannot lose (realtime/channel_layer.py). channels_redis's
            # pubsub layer also works (bench/room_fanout.py measures both);
            # capacity and expiry only apply to the core layer.
            "BACKEND": env.str(
                "CHANNEL_LAYER_BACKEND", default="realtime.channel_layer.RedisChannelLayer"
            ),
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
# Django's, behind the login throttle (accounts/throttle.py).
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
# Failed logins for one username (from anywhere), and from one address (for any
# usernames), before logins there are refused; 0 disables that limit.
LOGIN_MAX_FAILURES_PER_ACCOUNT = env.int("LOGIN_MAX_FAILURES_PER_ACCOUNT", default=5)
LOGIN_MAX_FAILURES_PER_ADDRESS = env.int("LOGIN_MAX_FAILURES_PER_ADDRESS", default=20)
# The lock lifts this long after the latest failure.
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=300)
# Password reset requests (accounts/throttle.py): per client address and per email
# address they are sent for, in a window of PASSWORD_RESET_WINDOW_SECONDS; 0 disables.
PASSWORD_RESET_MAX_PER_ADDRESS = env.int("PASSWORD_RESET_MAX_PER_ADDRESS", default=5)
PASSWORD_RESET_MAX_PER_EMAIL = env.int("PASSWORD_RESET_MAX_PER_EMAIL", default=3)
PASSWORD_RESET_WINDOW_SECONDS = env.int("PASSWORD_RESET_WINDOW_SECONDS", default=3600)
# A reset link works this long (and only until the password changes or the user logs in).
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT_SECONDS", default=3 * 24 * 3600)
# Under /api/ a CSRF failure is a JSON error saying why; pages keep Django's.
CSRF_FAILURE_VIEW = "realtime.api_errors.csrf_failure"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"

# --- Email (password reset links) ------------------------------------------------------
# Printed to the console (daphne's output) by default; with EMAIL_HOST set, sent by SMTP.
_email_host = env.str("EMAIL_HOST", default="")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.smtp.EmailBackend"
    if _email_host
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = _email_host or "localhost"
EMAIL_PORT = env.int("EMAIL_PORT", default=587)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=True)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT_SECONDS", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Realtime <noreply@localhost>")

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
# Voice: the Realtime API, through the same key and base URL (voice/realtime.py).
REALTIME_MODEL = env.str("REALTIME_MODEL", default="gpt-realtime" if OPENAI_API_KEY else "fakeai")
REALTIME_VOICE = env.str("REALTIME_VOICE", default="marin")
REALTIME_TRANSCRIPTION_MODEL = env.str(
    "REALTIME_TRANSCRIPTION_MODEL", default="gpt-4o-mini-transcribe"
)
# Voice activity detection on the server (voice/vad.py): who speaks when.
# "foreground" (Silero VAD's ONNX model, gated by the level where the background is
# other voices: only a person well above the room's talk is speech), "silero" (the model
# alone: voices, not noise; other people's talk is voice too) or "energy" (numpy: the
# level above an adaptive noise floor; cheaper, and any loud enough sound above a steady
# noise is speech to it).
VAD_BACKENDS = ("foreground", "silero", "energy")
VAD_BACKEND = env.str("VAD_BACKEND", default="foreground")
if VAD_BACKEND not in VAD_BACKENDS:
    raise ImproperlyConfigured(
        f"VAD_BACKEND must be one of {', '.join(VAD_BACKENDS)}, not {VAD_BACKEND!r}"
    )
# foreground: over a background of other voices, how far (dB) above their steady level
# a person must be to be speech.
VAD_FOREGROUND_MARGIN_DB = env.float("VAD_FOREGROUND_MARGIN_DB", default=5.0)
# A frame's speech score (0-1) that starts speech; speech goes on down to 0.15 below it
# (or half of it, if higher).
VAD_THRESHOLD = env.float("VAD_THRESHOLD", default=0.5)
# Speech this long starts a turn; silence this long ends it (counted in audio samples).
VAD_MIN_SPEECH_MS = env.float("VAD_MIN_SPEECH_MS", default=100.0)
VAD_MIN_SILENCE_MS = env.float("VAD_MIN_SILENCE_MS", default=500.0)
# Audio kept from before the detected start of an utterance.
VAD_PREFIX_PADDING_MS = env.float("VAD_PREFIX_PADDING_MS", default=300.0)
# Who ends a spoken turn: "local" (the VAD above: commit + response.create at its
# speech_stopped, with the echo gate) or "server" (the Realtime API's own VAD).
VOICE_TURN_DETECTION = env.str("VOICE_TURN_DETECTION", default="local")
if VOICE_TURN_DETECTION not in ("local", "server"):
    raise ImproperlyConfigured(
        f"VOICE_TURN_DETECTION must be 'local' or 'server', not {VOICE_TURN_DETECTION!r}"
    )
VOICE_INSTRUCTIONS = env.str(
    "VOICE_INSTRUCTIONS",
    default="You are a helpful voice assistant. Answer briefly and conversationally.",
)
# Largest microphone frame (bytes of PCM16 at 24 kHz: 9600 = 200 ms); browsers send 20-40 ms.
VOICE_MAX_FRAME_BYTES = env.int("VOICE_MAX_FRAME_BYTES", default=9600)
# The voice socket's flood limit: 20 ms frames are 500 per 10 s, plus events.
VOICE_MAX_FRAMES_PER_10S = env.int("VOICE_MAX_FRAMES_PER_10S", default=1200)
# Speech heard while the assistant is audible is compared with what it played in
# windows this long before it may interrupt (voice/echo.py): the barge-in's delay.
VOICE_ECHO_JUDGE_MS = env.float("VOICE_ECHO_JUDGE_MS", default=250.0)
# A turn is saved once its user transcript arrives, or after this long without it.
VOICE_TRANSCRIPT_WAIT_SECONDS = env.float("VOICE_TRANSCRIPT_WAIT_SECONDS", default=5.0)

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

# A lease (realtime.locks: one AI turn per room) a dead process held frees after this long.
LEASE_TTL_SECONDS = env.float("LEASE_TTL_SECONDS", default=15.0)

# --- Rooms ----------------------------------------------------------------------------
# How the AI's tokens reach a room's sockets: "streams" (each process reads the
# turn's stream once and serves its sockets) or "group" (a channel-layer group
# send per token batch: one write per member; kept to measure against).
ROOM_FANOUT = env.str("ROOM_FANOUT", default="streams")
ROOM_MAX_MESSAGE_CHARS = env.int("ROOM_MAX_MESSAGE_CHARS", default=4000)
ROOM_RATE_LIMIT_PER_MINUTE = env.int("ROOM_RATE_LIMIT_PER_MINUTE", default=30)
# Messages a room opens with (room_state) and per older page.
ROOM_PAGE_MESSAGES = env.int("ROOM_PAGE_MESSAGES", default=50)
# A person's typing is told to the room at most this often.
ROOM_TYPING_THROTTLE_SECONDS = env.float("ROOM_TYPING_THROTTLE_SECONDS", default=2.0)
# A socket renews its presence this often; a presence not renewed for
# PRESENCE_TTL_SECONDS (its process died) is gone.
PRESENCE_HEARTBEAT_SECONDS = env.float("PRESENCE_HEARTBEAT_SECONDS", default=3.0)
PRESENCE_TTL_SECONDS = env.float("PRESENCE_TTL_SECONDS", default=9.0)
ROOM_SYSTEM_PROMPT = env.str(
    "ROOM_SYSTEM_PROMPT",
    default=(
        "You are the AI participant of a group chat. Messages from people start with"
        " their name. Answer the latest messages, addressing people by name when it"
        " helps; be concise; use Markdown for code and lists."
    ),
)

# --- Chat ---------------------------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = env.int("CHAT_MAX_MESSAGE_CHARS", default=8000)
CHAT_RATE_LIMIT_PER_MINUTE = env.int("CHAT_RATE_LIMIT_PER_MINUTE", default=30)
# Messages per page of a conversation; older pages load as the person scrolls up.
CHAT_PAGE_MESSAGES = env.int("CHAT_PAGE_MESSAGES", default=50)
# Conversations per page of the sidebar; more load as the person scrolls down.
CHAT_SIDEBAR_PAGE_CONVERSATIONS = env.int("CHAT_SIDEBAR_PAGE_CONVERSATIONS", default=100)
# Conversations per page of search results, and the longest query read (characters).
CHAT_SEARCH_PAGE_RESULTS = env.int("CHAT_SEARCH_PAGE_RESULTS", default=20)
CHAT_SEARCH_MAX_QUERY_CHARS = env.int("CHAT_SEARCH_MAX_QUERY_CHARS", default=200)
REPLY_PERSIST_INTERVAL_MS = env.int("REPLY_PERSIST_INTERVAL_MS", default=500)
# Models a conversation may pick (comma-separated); empty: whatever the model
# service's /v1/models lists. OPENAI_MODEL is always offered.
CHAT_MODELS = [name.strip() for name in env.list("CHAT_MODELS", default=[]) if name.strip()]
# How long the model service's list of models is kept before it is asked again.
CHAT_MODELS_CACHE_SECONDS = env.float("CHAT_MODELS_CACHE_SECONDS", default=300.0)
CHAT_MAX_SYSTEM_PROMPT_CHARS = env.int("CHAT_MAX_SYSTEM_PROMPT_CHARS", default=4000)

# --- Logging: one line per request or reply, ids on every line, no message content at INFO
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# "plain" text, or "json" for one JSON object a line (log shippers).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"ids": {"()": "realtime.log_context.ContextFilter"}},
    "formatters": {
        "plain": {"()": "realtime.log_context.PlainFormatter"},
        "json": {"()": "realtime.log_context.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["ids"]}
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
    },
}
# Python warnings become log lines too (JSON ones with LOG_FORMAT=json), not bare stderr text.
logging.captureWarnings(True)

# --- Metrics (/metrics) ---------------------------------------------------------------
# Scrapers send it as "Authorization: Bearer <token>"; empty: only staff sessions may read.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
