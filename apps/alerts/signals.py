"""Notices within alerts: what the live view and other listeners hear of."""

from django.dispatch import Signal

# An alert was opened, moved (pending, firing, resolved), acknowledged or (un)muted. Sent with
# `alert` (the Alert, as now saved) inside the transaction that changed it; a receiver that
# publishes does so on commit.
alert_changed = Signal()
