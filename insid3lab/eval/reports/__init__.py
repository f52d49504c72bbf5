"""Reading finished runs back: summaries, reports, comparisons and their figures."""
