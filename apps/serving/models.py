"""Serving's tables: placements (which model version is loaded on which device), serving
profiles (how a version is served) and inference records (what each request cost).

They moved here from the fleet app (migrations serving.0001 and fleet.0004 keep every row; serving.0002
renames the tables from fleet_* to serving_*)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.domain.roles import Role
from apps.core.models import TimeStamped
from apps.serving.domain.states import PLACEMENT, PLACEMENT_ACTIVE


class Placement(TimeStamped):
    """One load of a model version onto a device, from request to unload (or failure)."""

    moc_write_role = Role.OPERATOR

    version = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="placements")
    device = models.ForeignKey("fleet.Device", on_delete=models.PROTECT, related_name="placements")
    state = models.CharField(
        max_length=16, choices=PLACEMENT.choices, default=PLACEMENT.initial, db_index=True
    )
    reserved_bytes = models.PositiveBigIntegerField(help_text="Memory held for it on the device while active")
    measured_bytes = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="What loading it really took, as the worker measured"
    )
    pinned = models.BooleanField(default=False, help_text="Never evicted to make room")
    keep_alive_s = models.PositiveIntegerField(default=300, help_text="Unloaded after this long unused")
    last_used_at = models.DateTimeField(null=True, blank=True)
    use_count = models.PositiveBigIntegerField(default=0)
    loaded_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="When it reached a final state")
    error = models.TextField(blank=True)
    error_class = models.CharField(
        max_length=32, blank=True, db_index=True, help_text="Why it failed, as a class"
    )
    end_reason = models.CharField(
        max_length=300, blank=True, help_text="Why it was unloaded: keep-alive, evicted for another, asked"
    )
    load_seconds = models.FloatField(null=True, blank=True, help_text="What loading it took on the worker")
    priority = models.FloatField(
        default=0.0, help_text="Its eviction priority (GDSF): lowest goes first when room is needed"
    )
    displaced_by = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="displaced",
        help_text="The placement it is being evicted for: that one loads only once this one is gone",
    )
    depends_on = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="dependents",
        help_text="The placement it is built on (an adapter's base), loaded first on the same device",
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Loading the same version twice on one device would only waste its memory.
            models.UniqueConstraint(
                fields=["version", "device"],
                condition=models.Q(state__in=sorted(PLACEMENT_ACTIVE)),
                name="serving_placement_one_active",
                violation_error_message="This version already has an active placement on this device.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} on {self.device} ({self.state})"

    @property
    def active(self) -> bool:
        return self.state in PLACEMENT_ACTIVE

    @property
    def held_bytes(self) -> int:
        """The device memory it holds: what loading really took once the worker measured it,
        until then what was reserved (apps.serving.ledger.placements_held_bytes says the same in SQL)."""
        return self.reserved_bytes if self.measured_bytes is None else self.measured_bytes


class ServingProfile(TimeStamped):
    """How one model version is served: limits, resilience thresholds, keep-alive, preloading.

    Optional: a version without one is served with the MOC_SERVING_* defaults.
    """

    moc_write_role = Role.OPERATOR

    version = models.OneToOneField("registry.ModelVersion", on_delete=models.CASCADE, related_name="serving")
    max_concurrency = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests served at once (bulkhead); empty: the default"
    )
    max_queue = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests that may wait for a slot; past it they get 429"
    )
    request_timeout_s = models.FloatField(null=True, blank=True, help_text="A request's time limit")
    breaker_failures = models.PositiveIntegerField(
        null=True, blank=True, help_text="Failures in a row that open a placement's circuit breaker"
    )
    breaker_open_s = models.FloatField(
        null=True, blank=True, help_text="How long an open breaker refuses before a probe"
    )
    keep_alive_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="New placements are unloaded after this long unused"
    )
    pinned = models.BooleanField(default=False, help_text="New placements are never evicted")
    preload = models.BooleanField(default=False, help_text="Load it when a worker starts")
    preload_node = models.CharField(
        max_length=100,
        blank=True,
        help_text="Preload only on this node's workers; empty: on the first that starts",
    )
    allow_pickle = models.BooleanField(
        default=False,
        help_text="Allow pickle weights (weights-only loader). Admins only: a pickle can carry code.",
    )

    class Meta:
        ordering = ["version__model__name", "version__number"]

    def __str__(self) -> str:
        return f"serving of {self.version}"


class InferenceRecord(models.Model):
    """One inference request: where it ran, how it ended and what it cost.

    Written in batches by the worker that served it, never on the request's own path; requests
    refused before reaching a worker are counted in /metrics (moc_inference_refused_total).
    """

    moc_write_role = None

    at = models.DateTimeField(db_index=True)
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, related_name="inferences")
    placement = models.ForeignKey(
        Placement, null=True, blank=True, on_delete=models.SET_NULL, related_name="inferences"
    )
    task = models.CharField(max_length=16)
    outcome = models.CharField(max_length=16, db_index=True, help_text="ok, or why not")
    error_class = models.CharField(max_length=32, blank=True)
    queue_ms = models.FloatField(
        null=True, blank=True, help_text="From the web process sending it to a worker thread starting it"
    )
    compute_ms = models.FloatField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    ttft_ms = models.FloatField(null=True, blank=True, help_text="Time to first token, on the worker")
    itl_ms = models.FloatField(null=True, blank=True, help_text="Mean time between tokens, on the worker")

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["version", "at"], name="serving_inference_version_at")]

    def __str__(self) -> str:
        return f"{self.task} on {self.version_id} {self.outcome} @ {self.at:%H:%M:%S}"
