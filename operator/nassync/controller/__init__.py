"""The kopf shell: observes the cluster, asks the core what to do, executes it."""
