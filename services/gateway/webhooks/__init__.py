"""/v1/webhook_endpoints: where an organization's job outcomes are sent (docs/webhooks.md)."""
