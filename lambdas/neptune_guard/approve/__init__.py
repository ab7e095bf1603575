"""Approvals: the endpoint's decisions, the marks they write, the trigger that asks, and how executions are started and read."""
