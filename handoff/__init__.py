"""Escalation policy, the handoff package, context push (webhooks, API), after-call work and the
CRM store. Never imports from ``voice``: the SIP transfer there drives what is built here."""
