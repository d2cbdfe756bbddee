"""MOC settings: one module, every value from the environment with a working default.

No environment at all gives a local install: SQLite under var/, Redis on 127.0.0.1:6379,
DEBUG off, a secret key generated once into var/. MOC_PRODUCTION=true demands real secrets
and turns on the HTTPS hardening that `manage.py check --deploy` asks for.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from apps.core.domain.queues import Queue as MocQueue
from apps.core.env import env_bool, env_float, env_int, env_list, env_secret, env_str, local_secret_key
from apps.core.redis_layout import caches_for, channel_layers_for

BASE_DIR = Path(__file__).resolve().parent.parent
# An empty value means the default too: state must never land in the current directory.
VAR_DIR = Path(env_str("MOC_VAR_DIR") or BASE_DIR / "var")

PRODUCTION = env_bool("MOC_PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)

_secret = env_secret("SECRET_KEY")
if _secret is None:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when MOC_PRODUCTION=true")
    _secret = local_secret_key(VAR_DIR / "secret_key")
SECRET_KEY = _secret

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public base URL printed by the run command and used in notifications.
MOC_PUBLIC_URL = env_str("MOC_PUBLIC_URL", "http://127.0.0.1:8000")
# Where MOC's own workers reach its web tier (release verification calls it), when that is not
# MOC_PUBLIC_URL: e.g. compose's http://web:8001 behind the TLS proxy. Empty: MOC_PUBLIC_URL.
MOC_SELF_URL = env_str("MOC_SELF_URL", "")

# MOC's own apps, the ground floor first (imports run one way: docs/ARCHITECTURE.md). This one list
# feeds INSTALLED_APPS, the API router (moc_site/api.py), the roles (apps.core.roles) and the
# Overview (moc_site/views.py).
MOC_APPS = ["core", "fleet", "models", "serving", "jobs", "deployments", "goals", "alerts"]

INSTALLED_APPS = [
    "apps.core.apps.MocAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_celery_beat",
    "axes",
    "channels",
    *(f"apps.{app}" for app in MOC_APPS),
]

MIDDLEWARE = [
    "apps.core.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.MetricsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Refuses an upload its session user may not send before CSRF's view hook parses its body.
    "apps.core.upload_gate.UploadPermissionMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apps.core.middleware.AuditContextMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "apps.core.middleware.RoleRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "moc_site.urls"
WSGI_APPLICATION = "moc_site.wsgi.application"
ASGI_APPLICATION = "moc_site.asgi.application"

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
                "apps.core.context_processors.moc",
            ],
        },
    }
]

# --- database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("MOC_SQLITE_PATH", str(VAR_DIR / "moc.sqlite3")),
            "OPTIONS": {
                # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue
                # instead of failing with "database is locked" halfway through.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            # A file, not :memory:, so Celery workers started by the tests see the same data;
            # one per test run, so concurrent runs do not share it.
            "TEST": {"NAME": str(VAR_DIR / f"test_moc_{os.getpid()}.sqlite3")},
            # Kept open between requests: a new SQLite connection parses the whole schema on its
            # first query, which cost an API request about 9 ms here (bench/inference_serving.py).
            "CONN_MAX_AGE": env_int("MOC_SQLITE_CONN_MAX_AGE", 600),
            "CONN_HEALTH_CHECKS": True,
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: broker, results, cache, channel layer -----------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = caches_for(REDIS_URL)
CHANNEL_LAYERS = channel_layers_for(REDIS_URL, env_int("MOC_CHANNEL_MAX_CONNECTIONS", 1000))

# --- celery ---------------------------------------------------------------------------
# The longest task MOC runs (a fine-tuning job) is bounded by this hard limit; the
# broker's visibility timeout must be longer, or Redis hands a running task to a second
# worker while the first is still on it.
MOC_TASK_TIME_LIMIT = env_int("MOC_TASK_TIME_LIMIT", 6 * 3600)
MOC_VISIBILITY_TIMEOUT = MOC_TASK_TIME_LIMIT + 3600
# A message delivered this many times without finishing is poisoned, not run again:
# a task that kills its worker must not loop forever.
MOC_TASK_MAX_DELIVERIES = env_int("MOC_TASK_MAX_DELIVERIES", 3)
# The device queues this node's device workers consume (`<kind>.<node>.<index>`, e.g.
# gpu.node1.0); `default` is the CPU worker's. scripts/run.sh derives them from the devices
# found when this is unset (manage.py fleet_devices --queues).
MOC_DEVICE_QUEUES = env_list("MOC_DEVICE_QUEUES", [])

_transport_options = {"visibility_timeout": MOC_VISIBILITY_TIMEOUT}
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
# kombu's Redis transport, made to survive a Redis restart (apps/core/broker.py): the broker is Redis.
CELERY_BROKER_TRANSPORT = "apps.core.broker:Transport"
# Celery reads the visibility timeout in three places: the broker transport, the result
# backend transport, and the visibility_timeout used by redis-based locks for beat/ETA.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    **_transport_options,
    # Ten priority lists per queue, so a job's priority orders the work (0 is served first).
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
    # kombu waits forever by default: a Redis that accepts but never answers would hold a web
    # thread's send, and the drainer, for good. A worker's BRPOP returns within its 1 s
    # brpop_timeout, well inside the socket timeout.
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = _transport_options
CELERY_VISIBILITY_TIMEOUT = MOC_VISIBILITY_TIMEOUT
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_TIME_LIMIT = MOC_TASK_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = MOC_TASK_TIME_LIMIT - 60
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
# How long a SIGTERMed worker lets running tasks finish before it hands them back and exits
# (apps/core/shutdown.py: Celery's own SIGTERM waits for them however long they take). Celery
# applies the same window to a cold shutdown (SIGQUIT).
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = float(env_int("MOC_WORKER_SOFT_SHUTDOWN_S", 30))
CELERY_WORKER_ENABLE_SOFT_SHUTDOWN_ON_IDLE = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = MocQueue.DEFAULT.value
CELERY_TASK_QUEUES = [
    Queue(
        CELERY_TASK_DEFAULT_QUEUE, Exchange(CELERY_TASK_DEFAULT_QUEUE), routing_key=CELERY_TASK_DEFAULT_QUEUE
    )
] + [Queue(name, Exchange(name), routing_key=name) for name in MOC_DEVICE_QUEUES]
# Every task by name. job_run has no fixed queue: each job is sent to its own queue
# (`default` or a device's gpu.<node>.<index>) when it is dispatched; so are the placement
# tasks (placement_load, _unload, _infer, device_ping), to the device's queue.
CELERY_TASK_ROUTES = {
    "apps.jobs.tasks.jobs_redispatch_stale": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.core.tasks.task_deliveries_prune": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.core.tasks.task_deliveries_reconcile": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.core.tasks.ping": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.fleet.tasks.fleet_nodes_sweep": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.fleet.tasks.fleet_telemetry_compact": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.serving.tasks.placements_expire_idle": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.serving.tasks.placements_reconcile": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.serving.tasks.placements_preload_by_demand": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.serving.tasks.inference_records_prune": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.models.tasks.registry_scan": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.models.tasks.registry_scan_periodic": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.models.tasks.registry_checksum": {"queue": CELERY_TASK_DEFAULT_QUEUE},
    "apps.models.tasks.registry_validate": {"queue": CELERY_TASK_DEFAULT_QUEUE},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Worker liveness kept in Redis: /readyz counts the live workers, and a request for a device
# whose worker has been silent this long is refused at once instead of waiting for its timeout.
MOC_WORKER_HEARTBEAT_S = env_int("MOC_WORKER_HEARTBEAT_S", 2)
MOC_WORKER_SILENT_AFTER_S = env_int("MOC_WORKER_SILENT_AFTER_S", 3 * MOC_WORKER_HEARTBEAT_S)
if MOC_WORKER_HEARTBEAT_S < 1 or MOC_WORKER_SILENT_AFTER_S < 2 * MOC_WORKER_HEARTBEAT_S:
    raise ImproperlyConfigured(
        "MOC_WORKER_HEARTBEAT_S must be at least 1 and MOC_WORKER_SILENT_AFTER_S at least twice it"
    )
# A worker's own Prometheus endpoint (0: none). Off where every process shares one metrics
# folder with web, whose /metrics then covers workers too (scripts/run.sh); on in compose.
MOC_WORKER_METRICS_PORT = env_int("MOC_WORKER_METRICS_PORT", 0)
# Jobs queued this long without a worker picking them up are sent again.
MOC_REDISPATCH_AFTER_S = env_int("MOC_REDISPATCH_AFTER_S", 300)
# A running job whose worker's heartbeat is gone this long is retried or failed.
MOC_RUNNING_LEASE_S = env_int("MOC_RUNNING_LEASE_S", 120)

# --- fleet: this node's devices and their telemetry ------------------------------------
# The node's name in MOC and in its queue names: letters, digits, '-' and '_'.
MOC_NODE_NAME = env_str("MOC_NODE_NAME") or socket.gethostname().split(".")[0]
if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", MOC_NODE_NAME):
    raise ImproperlyConfigured(
        f"MOC_NODE_NAME must be 1-100 letters, digits, '-' or '_', got {MOC_NODE_NAME!r}"
        " (the default is the host name up to its first dot)"
    )
# auto: NVIDIA GPUs through NVML when a driver answers, else the CPU as one device;
# or nvml, cpu, or simulated GPUs for demos and tests: sim:2x24GiB[,1x80GiB].
MOC_DEVICES = env_str("MOC_DEVICES", "auto")
MOC_CPU_CAPACITY_SHARE = env_float("MOC_CPU_CAPACITY_SHARE", 0.5)
MOC_TELEMETRY_INTERVAL_S = env_float("MOC_TELEMETRY_INTERVAL_S", 1.0)
# Stored samples: one mean per device per this many seconds, kept raw for MOC_TELEMETRY_RAW_HOURS,
# then as one-minute rollups until MOC_TELEMETRY_RETENTION_DAYS.
MOC_TELEMETRY_STORE_S = env_int("MOC_TELEMETRY_STORE_S", 10)
MOC_TELEMETRY_RAW_HOURS = env_int("MOC_TELEMETRY_RAW_HOURS", 24)
MOC_TELEMETRY_RETENTION_DAYS = env_int("MOC_TELEMETRY_RETENTION_DAYS", 7)
MOC_NODE_HEARTBEAT_S = env_int("MOC_NODE_HEARTBEAT_S", 10)
# A node silent this long is offline: its devices unavailable, its placements lost.
MOC_NODE_OFFLINE_AFTER_S = env_int("MOC_NODE_OFFLINE_AFTER_S", 60)
MOC_DEVICE_HOT_C = env_float("MOC_DEVICE_HOT_C", 85.0)
if MOC_TELEMETRY_INTERVAL_S <= 0 or MOC_TELEMETRY_STORE_S < MOC_TELEMETRY_INTERVAL_S:
    raise ImproperlyConfigured("MOC_TELEMETRY_INTERVAL_S must be > 0 and at most MOC_TELEMETRY_STORE_S")
if MOC_NODE_OFFLINE_AFTER_S <= 2 * MOC_NODE_HEARTBEAT_S:
    raise ImproperlyConfigured("MOC_NODE_OFFLINE_AFTER_S must be more than twice MOC_NODE_HEARTBEAT_S")

# --- model registry ---------------------------------------------------------------------
# Folders discovery walks for model files; every path MOC reads must stay inside one.
MOC_MODEL_ROOTS = [str(Path(p).resolve()) for p in env_list("MOC_MODEL_ROOTS", [str(VAR_DIR / "models")])]
# Scan the roots when the first `default` worker of a fresh install starts (then beat, every 15 min).
MOC_REGISTRY_SCAN_ON_START = env_bool("MOC_REGISTRY_SCAN_ON_START", True)
# The VRAM estimate's assumptions: KV cache for this context and batch, plus a runtime overhead
# (CUDA context, activations, allocator slack) of this share of the weights, at least the floor.
MOC_VRAM_CONTEXT = env_int("MOC_VRAM_CONTEXT", 4096)
MOC_VRAM_BATCH = env_int("MOC_VRAM_BATCH", 1)
MOC_VRAM_OVERHEAD_SHARE = env_float("MOC_VRAM_OVERHEAD_SHARE", 0.1)
MOC_VRAM_OVERHEAD_MIN_BYTES = env_int("MOC_VRAM_OVERHEAD_MIN_BYTES", 512 * 1024 * 1024)

# --- placement and serving ----------------------------------------------------------------
# The eviction policy (gdsf or lru; bench/eviction_policies.py compares them) and its churn
# floor: a placement loaded less than this long ago is never evicted, so a burst cannot evict
# what it just loaded before its first request. Short on purpose: the bench measured a 60 s
# floor costing GDSF 11 points of hit ratio on a bursty trace (it protects one-off loads).
MOC_EVICTION_POLICY = env_str("MOC_EVICTION_POLICY", "gdsf")
if MOC_EVICTION_POLICY not in {"gdsf", "lru"}:
    raise ImproperlyConfigured(f"MOC_EVICTION_POLICY must be gdsf or lru, got {MOC_EVICTION_POLICY!r}")
MOC_PLACEMENT_MIN_RESIDENCY_S = env_float("MOC_PLACEMENT_MIN_RESIDENCY_S", 15.0)
# A placement that served a request this recently is busy, not idle: never a victim.
MOC_PLACEMENT_IDLE_S = env_float("MOC_PLACEMENT_IDLE_S", 10.0)
MOC_PLACEMENT_KEEP_ALIVE_S = env_int("MOC_PLACEMENT_KEEP_ALIVE_S", 300)
# A request no worker took in this long fails, freeing what it reserved.
MOC_PLACEMENT_REQUEST_TIMEOUT_S = env_int("MOC_PLACEMENT_REQUEST_TIMEOUT_S", 600)
# A load still running after this long is failed (its worker frees the model if it ever ends).
MOC_PLACEMENT_LOAD_TIMEOUT_S = env_int("MOC_PLACEMENT_LOAD_TIMEOUT_S", 1800)
# Transient load errors only: retried this many times, backoff doubling from the base, with jitter.
MOC_LOAD_RETRIES = env_int("MOC_LOAD_RETRIES", 3)
MOC_LOAD_BACKOFF_S = env_float("MOC_LOAD_BACKOFF_S", 1.0)

# The load guard: a load that takes more than its reservation plus this share of it (and at least
# 256 MiB more) is stopped as out_of_memory, and what it took is freed (apps.serving.runtimes.guard).
MOC_LOAD_GUARD_MARGIN = env_float("MOC_LOAD_GUARD_MARGIN", 0.5)
if MOC_LOAD_GUARD_MARGIN < 0:
    raise ImproperlyConfigured(f"MOC_LOAD_GUARD_MARGIN must be 0 or more, got {MOC_LOAD_GUARD_MARGIN}")

# Per served version unless its serving profile says otherwise.
MOC_SERVING_CONCURRENCY = env_int("MOC_SERVING_CONCURRENCY", 8)
MOC_SERVING_QUEUE = env_int("MOC_SERVING_QUEUE", 32)
MOC_SERVING_TIMEOUT_S = env_float("MOC_SERVING_TIMEOUT_S", 30.0)
# Per web process: requests waiting at once on devices (in a version's bulkhead queue, or for an
# answer), in all and on one device queue; past either, 503. A burst for slow or dead devices then
# leaves threads for everything else: under gunicorn deploy/gunicorn.conf.py sets both, where
# unset, to one less than the threads of a web process.
MOC_SERVING_WAITING_PER_PROCESS = env_int("MOC_SERVING_WAITING_PER_PROCESS", 3)
MOC_SERVING_WAITING_PER_QUEUE = env_int("MOC_SERVING_WAITING_PER_QUEUE", 3)
if min(MOC_SERVING_WAITING_PER_PROCESS, MOC_SERVING_WAITING_PER_QUEUE) < 1:
    raise ImproperlyConfigured(
        "MOC_SERVING_WAITING_PER_PROCESS and MOC_SERVING_WAITING_PER_QUEUE must be at least 1, got "
        f"{MOC_SERVING_WAITING_PER_PROCESS} and {MOC_SERVING_WAITING_PER_QUEUE}"
    )
MOC_BREAKER_FAILURES = env_int("MOC_BREAKER_FAILURES", 5)
MOC_BREAKER_OPEN_S = env_float("MOC_BREAKER_OPEN_S", 30.0)
# Preload by demand: when a device sits idle, load the most requested versions that are not loaded.
MOC_PRELOAD_BY_DEMAND = env_bool("MOC_PRELOAD_BY_DEMAND", False)
MOC_INFERENCE_RETENTION_DAYS = env_int("MOC_INFERENCE_RETENTION_DAYS", 7)
# CPU threads torch (and OpenMP) use per request in a device worker, whose own thread pool
# already runs several requests at once.
MOC_TORCH_THREADS = env_int("MOC_TORCH_THREADS", 1)

# --- the data plane (/v1, the OpenAI-compatible API on the ASGI server) ------------------------
# An unpinned deployment idle this long scales to zero (its own keep_alive_s wins).
MOC_DEPLOYMENT_KEEP_ALIVE_S = env_int("MOC_DEPLOYMENT_KEEP_ALIVE_S", 900)
# How long a web process trusts what it cached (keys, routes) without hearing of a change: changes
# are announced at once over Redis pub/sub; this bounds a missed announcement.
MOC_DATAPLANE_CACHE_S = env_float("MOC_DATAPLANE_CACHE_S", 5.0)
# Requests one device worker runs at once from the direct channel (its own thread pool).
MOC_DEVICE_THREADS = env_int("MOC_DEVICE_THREADS", 8)
# Per-minute serving figures (ServingMinute rows) are kept this long.
MOC_SERVING_FIGURES_RETENTION_DAYS = env_int("MOC_SERVING_FIGURES_RETENTION_DAYS", 14)
# The performance check adds this to what a version's benchmark says a probe takes (timed in the
# runtime) for the serving path a probe crosses and the benchmark does not, before its ratio.
MOC_PERF_PATH_ALLOWANCE_MS = env_float("MOC_PERF_PATH_ALLOWANCE_MS", 25.0)
if MOC_PERF_PATH_ALLOWANCE_MS < 0:
    raise ImproperlyConfigured("MOC_PERF_PATH_ALLOWANCE_MS must be 0 or more")

# --- jobs and datasets ------------------------------------------------------------------
# Where datasets are discovered (JSONL or plain text) and where uploads are written (the first).
MOC_DATASET_ROOTS = [
    str(Path(p).resolve()) for p in env_list("MOC_DATASET_ROOTS", [str(VAR_DIR / "datasets")])
]
# The largest dataset file the API and page accept as an upload.
MOC_DATASET_UPLOAD_MAX_BYTES = env_int("MOC_DATASET_UPLOAD_MAX_BYTES", 50 * 1024 * 1024)
# Where running fine-tunes write their checkpoints (shared storage when several nodes train), and how
# many complete ones each job keeps.
MOC_CHECKPOINT_ROOT = str(Path(env_str("MOC_CHECKPOINT_ROOT") or VAR_DIR / "checkpoints").resolve())
MOC_CHECKPOINT_KEEP = env_int("MOC_CHECKPOINT_KEEP", 2)
# Where fine-tunes write the versions they register: inside a model root, so the registry owns them.
MOC_FINETUNE_OUTPUT_ROOT = str(
    Path(env_str("MOC_FINETUNE_OUTPUT_ROOT") or Path(MOC_MODEL_ROOTS[0]) / "fine-tuned").resolve()
)
if not any(Path(MOC_FINETUNE_OUTPUT_ROOT).is_relative_to(root) for root in MOC_MODEL_ROOTS):
    # Else every fine-tune and conversion would run to the end, then fail to register its output.
    raise ImproperlyConfigured(
        f"MOC_FINETUNE_OUTPUT_ROOT ({MOC_FINETUNE_OUTPUT_ROOT}) must be inside one of MOC_MODEL_ROOTS "
        f"({', '.join(MOC_MODEL_ROOTS)}), so that the registry owns what fine-tunes and conversions write"
    )
# Checkpoint-then-preempt: a running fine-tune holding memory a higher-priority job or a pinned load
# needs is asked to checkpoint and yield, and resumes when memory is free. Off by default.
MOC_JOB_PREEMPT = env_bool("MOC_JOB_PREEMPT", False)
# Automatic retries of transient failures (worker or device lost) wait this long, doubled per attempt.
MOC_JOB_RETRY_BACKOFF_S = env_float("MOC_JOB_RETRY_BACKOFF_S", 10.0)
# A fine-tune out of memory resumes with half the batch and twice the accumulation this many times.
MOC_JOB_OOM_RETRIES = env_int("MOC_JOB_OOM_RETRIES", 2)
# How often beat looks for waiting jobs that now fit (they are also looked at when a job ends).
MOC_JOB_DISPATCH_S = env_float("MOC_JOB_DISPATCH_S", 5.0)
# A convert job runs its child in a network namespace of its own; a worker that cannot make one
# refuses the job unless this allows the child to run behind its audit hook alone.
MOC_CONVERT_WITHOUT_NAMESPACE = env_bool("MOC_CONVERT_WITHOUT_NAMESPACE", False)
if MOC_CHECKPOINT_KEEP < 1 or MOC_JOB_OOM_RETRIES < 0 or MOC_JOB_DISPATCH_S <= 0:
    raise ImproperlyConfigured(
        "MOC_CHECKPOINT_KEEP must be at least 1, MOC_JOB_OOM_RETRIES 0 or more and MOC_JOB_DISPATCH_S above 0"
    )

# --- alerts ---------------------------------------------------------------------------
# How often beat evaluates the threshold rules against the live figures (and notifies).
MOC_ALERT_EVAL_S = env_float("MOC_ALERT_EVAL_S", 15.0)
# A notification that failed is tried again with a doubling backoff, this many times in all.
MOC_ALERT_DELIVERY_ATTEMPTS = env_int("MOC_ALERT_DELIVERY_ATTEMPTS", 8)
# Seconds one webhook, Alertmanager or SMTP attempt may take.
MOC_ALERT_DELIVERY_TIMEOUT_S = env_float("MOC_ALERT_DELIVERY_TIMEOUT_S", 10.0)
# Active alerts are posted to an Alertmanager channel again this often (Alertmanager resolves an
# alert it has not heard of for its resolve_timeout, 5 minutes by default).
MOC_ALERTMANAGER_RESEND_S = env_float("MOC_ALERTMANAGER_RESEND_S", 60.0)
# Resolved alerts and deliveries are kept this many days (the history page charts them).
MOC_ALERT_RETENTION_DAYS = env_int("MOC_ALERT_RETENTION_DAYS", 90)
# Email notification channels go through Django's email backend (SMTP by default).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "moc@localhost")
if MOC_ALERT_EVAL_S <= 0 or MOC_ALERT_DELIVERY_ATTEMPTS < 1 or MOC_ALERT_DELIVERY_TIMEOUT_S <= 0:
    raise ImproperlyConfigured(
        "MOC_ALERT_EVAL_S and MOC_ALERT_DELIVERY_TIMEOUT_S must be above 0, "
        "MOC_ALERT_DELIVERY_ATTEMPTS at least 1"
    )

# --- auth -----------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AXES_FAILURE_LIMIT = env_int("MOC_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("MOC_LOGIN_COOLOFF_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "core/locked_out.html"
AXES_ENABLED = env_bool("MOC_LOGIN_RATE_LIMIT", True)
# Behind the proxy every REMOTE_ADDR is the proxy's: lock out by the caller's address instead.
AXES_CLIENT_IP_CALLABLE = "apps.core.audit.client_ip"

# --- API ------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.core.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.api.permissions.RolePermission"],
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.api.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.errors.exception_handler",
    "DEFAULT_THROTTLE_CLASSES": [
        "apps.core.api.throttling.AnonThrottle",
        "apps.core.api.throttling.UserThrottle",
        "apps.core.api.throttling.ApiKeyThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("MOC_THROTTLE_ANON", "60/min"),
        "user": env_str("MOC_THROTTLE_USER", "2000/min"),
        "api_key": env_str("MOC_THROTTLE_API_KEY", "6000/min"),
        # Failed API-key attempts per address, apart from anonymous calls (past it, 429).
        "api_key_failures": env_str("MOC_THROTTLE_KEY_FAILURES", "30/min"),
    },
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MOC API",
    "DESCRIPTION": "The ModelOps Coordinator's REST API: fleet, models, jobs, deployments, goals, alerts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["apps.core.api.permissions.RolePermission"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "APPEND_COMPONENTS": {
        "securitySchemes": {
            "ApiKeyAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key from 'My API keys': `Authorization: Bearer <key>` "
                "(or `Authorization: Api-Key <key>`).",
            }
        }
    },
    # Several tables have a `state`, `kind` or `format`; name each enum after its table.
    "ENUM_NAME_OVERRIDES": {
        "NodeStateEnum": "apps.fleet.domain.states.NODE.choices",
        "DeviceHealthEnum": "apps.fleet.domain.states.DEVICE_HEALTH.choices",
        "PlacementStateEnum": "apps.serving.domain.states.PLACEMENT.choices",
        "DeviceKindEnum": "apps.fleet.domain.kinds.DEVICE_KIND_CHOICES",
        "NodeBackendEnum": "apps.fleet.domain.kinds.BACKEND_CHOICES",
        "ModelFormatEnum": "apps.models.domain.formats.MODEL_FORMAT_CHOICES",
        "ModelFileFormatEnum": "apps.models.domain.formats.FILE_FORMAT_CHOICES",
        "ValidationStateEnum": "apps.models.domain.states.VALIDATION.choices",
        "ScanStateEnum": "apps.models.domain.states.SCAN.choices",
        "DatasetStateEnum": "apps.jobs.domain.states.DATASET.choices",
        "GoalStateEnum": "apps.goals.domain.states.GOAL.choices",
        "GoalKindEnum": "apps.goals.domain.targets.KIND_CHOICES",
        "AlertStateEnum": "apps.alerts.domain.states.ALERT.choices",
        "ChannelKindEnum": "apps.alerts.models.CHANNEL_KIND_CHOICES",
        "JobStateEnum": "apps.jobs.domain.states.JOB.choices",
        "JobKindEnum": "apps.jobs.domain.kinds.KIND_CHOICES",
        "JobEventLevelEnum": "apps.jobs.domain.kinds.LEVEL_CHOICES",
        "DeploymentStateEnum": "apps.deployments.domain.states.DEPLOYMENT.choices",
        "ReleaseStateEnum": "apps.deployments.domain.states.RELEASE.choices",
        "VerificationStateEnum": "apps.deployments.domain.states.VERIFICATION.choices",
        "CheckNameEnum": "apps.deployments.domain.checks.CHECK_NAME_CHOICES",
        "CheckStatusEnum": "apps.deployments.domain.checks.CHECK_STATUS_CHOICES",
    },
}
# Bodies above this are refused with 413 before anything parses them.
MOC_MAX_REQUEST_BYTES = env_int("MOC_MAX_REQUEST_BYTES", 2 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MOC_MAX_REQUEST_BYTES
# What a file upload's body may hold past the file itself: multipart boundaries, part headers and
# the form's other fields. compose's proxy adds the same figure (deploy/nginx/upload-limit.envsh).
MOC_UPLOAD_ENVELOPE_BYTES = 64 * 1024
# The paths (exactly these) whose bodies may pass MOC_MAX_REQUEST_BYTES, with their limit: the request
# size middleware and both nginx configurations (deploy/nginx) read it.
MOC_UPLOAD_PATHS = {
    path: MOC_DATASET_UPLOAD_MAX_BYTES + MOC_UPLOAD_ENVELOPE_BYTES
    for path in ("/api/v1/datasets/", "/jobs/datasets/upload/")
}

# --- static, i18n ---------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "apps.core.staticfinders.VendorFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Outside production the app serves assets straight from the finders, so no collectstatic is needed.
WHITENOISE_USE_FINDERS = not PRODUCTION
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("MOC_SESSION_AGE_S", 12 * 3600)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("MOC_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("MOC_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("MOC_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("MOC_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("MOC_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("MOC_HSTS_PRELOAD", True)
    # The reverse proxy terminates TLS and says so in this header.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# --- metrics --------------------------------------------------------------------------
# Set by the run command and compose: several processes write their metrics here and
# /metrics merges them.
PROMETHEUS_MULTIPROC_DIR = env_str("PROMETHEUS_MULTIPROC_DIR")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"routine_tasks": {"()": "moc_site.logfilters.RoutineTasks"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["routine_tasks"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
# When set, /metrics requires `Authorization: Bearer <token>` (Prometheus' `authorization` block).
MOC_METRICS_TOKEN = env_secret("MOC_METRICS_TOKEN") or ""
# Reverse proxies besides loopback (addresses or networks, e.g. 172.28.0.0/16) whose
# X-Forwarded-For is believed for audit addresses, throttles and login lock-outs.
MOC_TRUSTED_PROXIES = env_list("MOC_TRUSTED_PROXIES", [])
