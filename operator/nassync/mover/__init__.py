"""The pod-side CLI `nassync-mover`: the only code that touches run files."""
