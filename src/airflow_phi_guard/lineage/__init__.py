"""OpenLineage facets, their JSON Schemas, emission, and the audit read back from events."""
