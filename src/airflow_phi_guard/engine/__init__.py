"""The plan (what happens to each column) and the executor that carries it out."""
