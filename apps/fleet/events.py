"""Channel-layer group names for the fleet's live updates."""


def node_group(node_id: int) -> str:
    """A node's page: its devices' health and its placements' states."""
    return f"fleet.node.{node_id}"
