"""Per-cloud adapters. Each cloud package holds its inventory listers and capability implementations."""
