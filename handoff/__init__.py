"""Escalation policy, handoff package, warm transfer and the CRM store (not yet built)."""
