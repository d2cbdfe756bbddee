"""Channel-layer group names for alerts."""

# Every alert change, for the alerts page and the Overview.
ALERTS_GROUP = "alerts"


def alerts_group() -> str:
    return ALERTS_GROUP
