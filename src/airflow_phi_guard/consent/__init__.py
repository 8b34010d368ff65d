"""Consent registries and the rules that admit a record for a purpose."""
