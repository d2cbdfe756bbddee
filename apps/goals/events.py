"""Channel-layer group names for goals."""


def goal_group(goal_id: int) -> str:
    return f"goal.{goal_id}"
