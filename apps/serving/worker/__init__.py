"""Serving: on a device worker, the models its process holds, loading and unloading them and
answering inference with them (residents, records, worker); for the pages, what they read of
it (selectors). The web side of a request is apps.serving.inference."""
