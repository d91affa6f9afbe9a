"""Delivering captured leads to the business's CRM over signed webhooks."""
