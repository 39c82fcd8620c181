"""Development tooling: local control plane, process node, loopback NAS. Not shipped in the image."""
