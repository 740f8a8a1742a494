"""The report: tables, figures, markdown, the papers' published numbers, and the report stage."""
