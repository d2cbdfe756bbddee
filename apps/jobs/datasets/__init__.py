"""Datasets: files of training and evaluation rows under the dataset roots (MOC_DATASET_ROOTS).

discovery walks the roots (stat only), services registers what it found and queues validations,
validation reads a file row by row, upload writes an uploaded file into the first root, reading
gives the runners a split's rows, preview gives the page its first rows. The row rules themselves
are pure Python in apps.jobs.domain.datasets.
"""
