"""Fleet management: recipes written into the config, model files, nodes, images, benchmarks.

Each part is one module here (the logic), one under :mod:`swapd.proxy.fleet` (its admin API
routes) and one under :mod:`swapd.cli` (its command); the UI has a page per part.
"""
