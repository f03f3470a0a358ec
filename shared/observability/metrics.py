"""Every Prometheus metric family of web and worker, declared once (prometheus-client directly).

Label values are bounded by construction: route *templates* (never raw paths), pool names
(``primary``, ``replica0``...), job kinds, mail templates, limit names. With several processes,
``PROMETHEUS_MULTIPROC_DIR`` makes each process write its samples to files that ``registry()``
merges; gauges then say how to merge (``livesum`` for per-process amounts, ``livemax`` for
values every process measures alike, such as queue depth or replica lag).
"""
from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

# Requests. The histogram has no status label: it would multiply every route's 14 buckets by each status.
HTTP_REQUESTS = Counter("taskdeck_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("taskdeck_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
                         buckets=LATENCY_BUCKETS)
HTTP_IN_FLIGHT = Gauge("taskdeck_http_requests_in_flight", "HTTP requests being handled", ["method", "route"],
                       multiprocess_mode="livesum")

# Database pools, sampled every few seconds and at scrape time (shared.observability.samplers.sample_pools).
DB_POOL_SIZE = Gauge("taskdeck_db_pool_size", "Open connections", ["pool"], multiprocess_mode="livesum")
DB_POOL_MAX = Gauge("taskdeck_db_pool_max", "Pool capacity", ["pool"], multiprocess_mode="livesum")
DB_POOL_IN_USE = Gauge("taskdeck_db_pool_in_use", "Connections checked out", ["pool"], multiprocess_mode="livesum")
DB_POOL_WAITING = Gauge("taskdeck_db_pool_waiting", "Callers waiting for a connection", ["pool"],
                        multiprocess_mode="livesum")
# Seconds the replica's replay is behind the primary (0 when caught up); -1 when the replica is unreachable.
REPLICA_LAG = Gauge("taskdeck_replica_lag_seconds", "Replica replay lag", ["replica"], multiprocess_mode="livemax")

# Cache (shared.cache) and rate limits (web.ratelimit).
CACHE_HITS = Counter("taskdeck_cache_hits_total", "Cache hits", ["cache"])
CACHE_MISSES = Counter("taskdeck_cache_misses_total", "Cache misses (filled from the primary)", ["cache"])
CACHE_ERRORS = Counter("taskdeck_cache_errors_total", "Cache operations that failed (Redis)", ["cache"])
RATELIMIT_REJECTIONS = Counter("taskdeck_ratelimit_rejections_total", "Requests refused with 429", ["limit"])
RATELIMIT_ERRORS = Counter("taskdeck_ratelimit_errors_total", "Limit checks skipped because Redis failed (fail open)")

# The change feed (shared.events) and its live streams (web.live, web.api.stream).
EVENT_STREAMS_OPEN = Gauge("taskdeck_event_streams_open", "Open /api/v1/events streams", multiprocess_mode="livesum")
EVENTS_PUSHED = Counter("taskdeck_events_pushed_total", "Events sent on live streams")
EVENTS_SERVED = Counter("taskdeck_events_served_total", "Events returned by /api/v1/changes")
EVENT_STREAM_ENDS = Counter("taskdeck_event_stream_ends_total", "Streams ended by the server", ["reason"])
# From the event's transaction start (its `at`) to its write on a stream: the live path's whole delay.
EVENT_PUSH_LAG = Histogram("taskdeck_event_push_lag_seconds", "Event commit to stream write",
                           buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WEBHOOK_DELIVERIES = Counter("taskdeck_webhook_deliveries_total", "Webhook delivery attempts by outcome",
                             ["outcome"])
WEBHOOK_DELIVERY_SECONDS = Histogram("taskdeck_webhook_delivery_seconds", "Webhook delivery attempt duration",
                                     buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
WEBHOOK_OLDEST_PENDING = Gauge("taskdeck_webhook_oldest_pending_seconds",
                               "Age of the oldest undelivered webhook delivery", multiprocess_mode="livemax")
DOORBELL_ERRORS = Counter("taskdeck_event_doorbell_errors_total", "Doorbell publishes or subscriptions that failed")

# Jobs (exports and reports; kind = export, summary, admin_activity) and mail.
JOBS_ENQUEUED = Counter("taskdeck_jobs_enqueued_total", "Jobs handed to the queue", ["kind"])
JOBS_STARTED = Counter("taskdeck_jobs_started_total", "Job runs started", ["kind"])
JOBS_SUCCEEDED = Counter("taskdeck_jobs_succeeded_total", "Jobs succeeded", ["kind"])
JOBS_FAILED = Counter("taskdeck_jobs_failed_total", "Jobs failed for good", ["kind"])
JOBS_RETRIED = Counter("taskdeck_jobs_retried_total", "Job runs that hit a transient error and will retry", ["kind"])
JOB_DURATION = Histogram("taskdeck_job_duration_seconds", "Job run time", ["kind", "outcome"], buckets=JOB_BUCKETS)
QUEUE_DEPTH = Gauge("taskdeck_queue_depth", "Entries waiting in the arq queue", multiprocess_mode="livemax")
EMAILS_SENT = Counter("taskdeck_emails_sent_total", "Mails accepted by SMTP", ["template"])
EMAILS_FAILED = Counter("taskdeck_emails_failed_total", "Mail attempts that failed (retried or given up)",
                        ["template", "final"])
# +Inf when no worker has ever beaten (or Redis is unreachable): the alert treats both as "no worker".
WORKER_HEARTBEAT_AGE = Gauge("taskdeck_worker_heartbeat_age_seconds", "Seconds since a worker last beat",
                             multiprocess_mode="livemin")

# Failover (shared/failover.py, shared/redis_client.py, worker/jobs/cleanup.py).
DB_FAILOVERS = Counter("taskdeck_db_failovers_total", "Times this process found the primary on another server or timeline")
DB_PRIMARY_UP = Gauge("taskdeck_db_primary_up", "1 while a writable primary answers, else 0", multiprocess_mode="livemin")
DB_NO_PRIMARY_SECONDS = Counter("taskdeck_db_no_primary_seconds_total", "Seconds this process found no writable primary")
DB_RETRIES = Counter("taskdeck_db_failover_retries_total", "Requests retried once after losing the primary", ["outcome"])
REDIS_CONNECTS = Counter("taskdeck_redis_connects_total", "Connections opened to Redis (a jump: reconnects)")
REDIS_NEW = Counter("taskdeck_redis_new_total", "Times Redis was found to be another master or emptied")
JOBS_REENQUEUED = Counter("taskdeck_jobs_reenqueued_total", "Jobs the reconciler handed to the queue again",
                          ["kind", "reason"])
# Exposed at 0 from the start, so rules and dashboards see the series before the first failover.
for _kind in ("export", "summary", "admin_activity"):
    for _reason in ("lost", "stale"):
        JOBS_REENQUEUED.labels(_kind, _reason)
for _outcome in ("succeeded", "refused", "no-primary", "failed-again"):
    DB_RETRIES.labels(_outcome)


def registry() -> CollectorRegistry:
    """What /metrics serves: this process's registry, or every process's files when multiprocess."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    return REGISTRY


def process_exited(pid: int) -> None:
    """Drop a finished process's live gauges (multiprocess mode only)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
