"""Compliance: a rule registry over the normalised inventory, waivers, scan diffs, reports, fixers."""
