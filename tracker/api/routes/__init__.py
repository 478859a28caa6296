"""The HTTP API's routers: tasks, webhooks and deliveries, operations."""
