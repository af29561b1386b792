"""The platform's production checklist as a Pulumi policy pack (see docs/policies.md)."""
