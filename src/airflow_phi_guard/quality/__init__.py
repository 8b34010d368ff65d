"""Great Expectations suites derived from policies, validation and Data Docs."""
