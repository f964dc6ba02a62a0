"""api layer: gRPC servicers that translate messages to plain Python and back, nothing else."""
