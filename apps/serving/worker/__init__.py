"""The device worker's side of serving: in the Celery worker process that serves one device, the
models it holds (residents), loading and unloading them (loading), answering requests with them
(answering), recording what each request cost (records), and the worker's start and stop (worker,
device). Nothing on the web side imports it: the web side of a request is apps.serving.inference,
and it reaches this package only through task messages (apps.serving.messages)."""
