"""Telling architectures apart: one module per network in `archs/`, each with the network's spec (how its state
dicts are recognised, what their shapes say, how foreign key layouts map onto ours). The registry lists them."""
