"""Findings: evaluations as ASFF, published to Security Hub, and the report people read."""
