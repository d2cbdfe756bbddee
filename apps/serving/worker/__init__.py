"""The device worker's side of serving: in the Celery worker process that serves one device, the
models it holds (residents), loading and unloading them (loading), answering requests with them
(answering), recording what each request cost (records), and the worker's start and stop (worker,
device). The web side of a request (apps.serving.inference, placing, the views and API) imports
none of it and reaches it only through task messages (apps.serving.messages); every process
connects the worker's Celery signal receivers at start-up (ServingConfig.ready), which act only
in a device worker."""
