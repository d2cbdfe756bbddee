"""The probe request's words: a greedy generation of PROBE_NEW_TOKENS tokens after PROBE_PROMPT, the
smallest request that shows a causal LM answers (pure Python).

The deployments' health and performance checks send it to a placement
(apps.deployments.verification.probes), and a benchmark job times it in the runtime
(apps.jobs.measuring.benchmark) as the baseline the performance check holds the probe against, so
both read it from here, the floor beneath them."""

from __future__ import annotations

PROBE_PROMPT = "Hello"
PROBE_NEW_TOKENS = 4
