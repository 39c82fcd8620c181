"""One module per mover step: gate, push, verify, cleanup."""
