"""The pure decision core: phases, interlocks, bandwidth, backoff. No I/O, no Kubernetes client."""
