"""The SyncTarget and SyncJob API as pydantic models (the same shapes as crds/)."""
