"""Job names shared by the enqueuing web tier and the worker (a rename cannot drift between them)."""
SEND_EMAIL = "send_email"
