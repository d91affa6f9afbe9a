"""Business profiles per called number."""
