"""Distributed engines (Spark; PyTorch DDP) that implement the single-node steps and write the same artifacts."""
