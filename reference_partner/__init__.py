"""The project's own stand-in for the partner: its API server, its disaggregation, and scoring.

Apart from partner_job on purpose: the nightly job talks to whatever partner
PARTNER_URL names and must never depend on how this one works inside.
"""
