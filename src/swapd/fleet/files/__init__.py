"""Model files on the machine swapd runs on: the Hugging Face cache and the folders of the GGUF
files configured models use (:mod:`.listing`), downloads with ``huggingface_hub``
(:mod:`.pulls`), and a model entry made from a file (:mod:`.entry`).

Remote nodes (``tcp://`` and ``ssh://`` Docker endpoints) are listed as not reachable for
files: swapd never runs a home-made agent on them, and listing a remote cache would need a
shell there.
"""
