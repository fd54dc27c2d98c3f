"""Fitting models: the re-id network's training loop (checkpointed, resumable), losses, averaging,
multi-task attribute layers, fusion weights, ACRN tables and the interpreter's network."""
