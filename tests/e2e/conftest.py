"""End-to-end fixtures: CRDs installed, the operator running, loopback NAS endpoints.

Tests drive nassync only through `kubectl apply` of YAML and read what a user
reads (status, conditions, Events, the NAS directory). The operator runs as a
real process against the real local cluster (the session fixture `operator`
in tests/conftest.py, shared with the kubelet-node tests so that one operator
reconciles everything); mover pods run on the process node (host binaries
instead of the image — the one mock, see docs/development.md).
"""
