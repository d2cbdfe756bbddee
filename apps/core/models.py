from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

from apps.core.domain.roles import ROLE_CHOICES, Role
from apps.core.domain.states import DELIVERY


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ApiKey(AbstractAPIKey):
    """A key for programs: shown once, stored hashed, found by its prefix, acting as its owner
    with at most the key's role."""

    moc_write_role = Role.VIEWER  # anyone may hold keys; the API limits them to their own

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default=Role.VIEWER.value)
    last_used_at = models.DateTimeField(null=True, blank=True)
    limited = models.BooleanField(
        default=False,
        help_text="Limited to the deployments granted to it (apps.deployments.KeyGrant); with none left "
        "it may call none",
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class AuditEvent(models.Model):
    """One write by a person or program: who, what, to which object, from where."""

    moc_write_role = None  # written only by MOC itself; never edited

    class Source(models.TextChoices):
        API = "api", "API"
        PAGE = "page", "Page"
        ADMIN = "admin", "Admin"
        SYSTEM = "system", "System"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Username (and key prefix) at the time")
    api_key_prefix = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    source = models.CharField(max_length=8, choices=Source.choices, db_index=True)
    content_type = models.ForeignKey(ContentType, null=True, blank=True, on_delete=models.SET_NULL)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    changes = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    request_path = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_id"])]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.object_repr}".strip()


class TaskDelivery(models.Model):
    """How many times the broker handed a task message to a worker, kept in the database.

    With acks_late a message whose worker died is delivered again; this counter lets a
    task that keeps killing its worker be poisoned instead of looping forever.
    """

    moc_write_role = None

    task_id = models.CharField(max_length=64, unique=True)
    task_name = models.CharField(max_length=200, db_index=True)
    queue = models.CharField(max_length=100, blank=True)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=DELIVERY.choices, default=DELIVERY.initial, db_index=True)
    deliveries = models.PositiveIntegerField(default=0)
    lost_deliveries = models.PositiveIntegerField(
        default=0, help_text="Deliveries whose worker died mid-task; retries are not counted."
    )
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    first_delivered_at = models.DateTimeField(auto_now_add=True)
    last_delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-first_delivered_at"]
        verbose_name_plural = "task deliveries"

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}] {self.state}"


class OutboxMessage(models.Model):
    """A task message that a committed transaction decided and the broker has not taken yet.

    Written in the sender's own transaction (apps.core.dispatch.send_on_commit), so it exists
    exactly when the rows that decided it committed; deleted once the broker took it. A row
    still here means the broker was unreachable: the default workers' drainer
    (apps/core/outbox.py) sends it once the broker is back; or, with failed_at, that the message
    itself could not be sent.
    """

    moc_write_role = None

    task_id = models.CharField(
        max_length=64,
        unique=True,
        help_text="Fixed when the message is decided: a second send is the same task.",
    )
    task_name = models.CharField(max_length=200)
    args = models.JSONField(default=list, blank=True)
    options = models.JSONField(
        default=dict, blank=True, help_text="Celery's send options: queue, priority, …"
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Past this it is dropped, not sent.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Sends that failed.")
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a send failed for a reason other than the broker being away (last_error): "
        "it is kept to be looked at, not sent again.",
    )
    claimed_by = models.CharField(max_length=120, blank=True, help_text="The sender holding it now.")
    claimed_until = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "outbox message"

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}]"
