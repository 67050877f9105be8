"""The scan: which files, decoding them, each photo in a worker, and the pipeline that joins them."""
