"""De-identification treatments and the data they rest on (ZIP3 tables)."""
