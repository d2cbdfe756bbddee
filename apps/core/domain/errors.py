"""Errors the rules raise, independent of how they reach a user (the API maps them to 409)."""


class Conflict(Exception):
    """The request is valid but impossible in the object's current state."""

    code = "conflict"
