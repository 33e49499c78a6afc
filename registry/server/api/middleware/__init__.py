"""ASGI middleware: the audit trail of every request and the request-body limit."""
