"""inkwell's pure PyTorch library: data, models, training, decoding, activation maps, plots.

Imports nothing from the web, queue or database layers (api/, worker/, core/).
"""
