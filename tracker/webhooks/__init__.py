"""Webhooks: where they go, what they carry, how they are signed and sent."""
