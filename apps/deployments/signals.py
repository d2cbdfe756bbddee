"""Notices other apps may listen to (alerts will): sent once the change they describe committed."""

from django.dispatch import Signal

# A release ended: promoted, aborted, rolled back or failed. Sent with sender=Release and
# `release`, `outcome` (its final state) and `reason`.
release_ended = Signal()
