"""The evaluate and benchmark runners: a version's loss, perplexity and exact match on a dataset and
a golden set, and its load time, latencies, throughput and peak memory on the job's device.

Imported only on workers (through apps.jobs.runners' dotted paths): torch and transformers take
seconds to import and web processes never need them.
"""
