"""The Safe Harbor identifiers and their detection by column name and by value."""
