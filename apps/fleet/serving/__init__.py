"""Serving on a device worker: the models this process holds, loading and unloading them, and
answering inference requests with them. The web side of a request is apps.fleet.inference."""
