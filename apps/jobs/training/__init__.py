"""Training and the model handling the job runners share: loading a causal LM (and a peft adapter on
it) for a job, turning dataset rows into token batches, checkpoints, and the fine-tune runner.

Imported only on workers (through apps.jobs.runners' dotted paths): torch, transformers and peft
take seconds to import and web processes never need them.
"""
