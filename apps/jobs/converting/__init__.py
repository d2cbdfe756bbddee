"""The convert job: a pickle checkpoint (pytorch_model.bin and kin) made into safetensors.

The unpickling happens in a child process of its own (`child`), started without a network
(`sandbox`), which reads the pickle with torch's weights-only loader only; the runner (`convert`)
scans the pickle first, starts the child, and registers what it wrote as a new version.
"""
